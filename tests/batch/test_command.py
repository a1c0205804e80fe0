"""batch_command: the CLI-ready entry point (discover, run, summary line, exit status)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.batch import batch_command
from medseg.errors import ConfigError, InputError
from tests.batch.conftest import write_cases
from tests.batch.processors import ThresholdProcessor


def test_exit_status_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    write_cases(src, 2)
    out = tmp_path / "out"
    assert batch_command(src, ThresholdProcessor(), out, executor="overlap") == 0
    err = capsys.readouterr().err
    assert "2 cases: 2 succeeded, 0 skipped, 0 failed" in err
    assert str(out / "report.html") in err
    (src / "bad.nii.gz").write_text("x")
    assert batch_command(src, ThresholdProcessor(), out, quiet=True) == 1
    assert capsys.readouterr().err == ""
    assert "3 cases: 0 succeeded, 2 skipped, 1 failed (InputError: 1)" in (out / "report.html").read_text()


def test_bad_source_or_options_fail_before_any_case(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        batch_command(tmp_path / "missing", ThresholdProcessor(), tmp_path / "out")
    src = tmp_path / "in"
    write_cases(src, 1)
    with pytest.raises(ConfigError, match="part_id must be in 0..1"):
        batch_command(src, ThresholdProcessor(), tmp_path / "out", num_parts=2, part_id=2)
    assert not (tmp_path / "out").exists()
