"""Killing a batch with SIGKILL mid-run and starting it again gives the outputs of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medseg.batch import discover_cases, provenance_path, run_batch
from tests.batch.conftest import write_cases
from tests.batch.processors import ThresholdProcessor

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from medseg.batch import discover_cases, run_batch
from tests.batch.processors import ThresholdProcessor

report = run_batch(discover_cases({src!r}), ThresholdProcessor(delay_s=0.4), {out!r}, executor="overlap", progress=False)
sys.exit(report.exit_code)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_then_restart_matches_uninterrupted_run(tmp_path: Path) -> None:
    src, out, ref = tmp_path / "in", tmp_path / "out", tmp_path / "ref"
    write_cases(src, 6)
    script = tmp_path / "batch.py"
    script.write_text(SCRIPT.format(root=str(ROOT), src=str(src), out=str(out)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not provenance_path(out, "case_000").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"batch ended before the first case finished: {proc.communicate()}")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL
    done_before = {p.name.split(".")[0] for p in out.glob("*.provenance.json")}
    assert 1 <= len(done_before) < 6
    assert not (out / "report.json").exists()

    resumed = run_batch(discover_cases(src), ThresholdProcessor(), out, executor="overlap", progress=False)
    status = {r.case_id: r.status for r in resumed.rows}
    assert {c for c, s in status.items() if s == "skipped"} == done_before
    assert {c for c, s in status.items() if s == "succeeded"} == {f"case_{i:03d}" for i in range(6)} - done_before

    reference = run_batch(discover_cases(src), ThresholdProcessor(), ref, progress=False)
    assert reference.succeeded == 6
    for i in range(6):
        name = f"case_{i:03d}.nii.gz"
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
