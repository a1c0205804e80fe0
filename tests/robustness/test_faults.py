"""Faults: SIGKILL while writing, a full disk at every write of a batch, lost Dask workers.

A lost Dask worker (its process killed mid-case) being retried is tested in
``tests/batch/test_dask.py::test_existing_scheduler_and_lost_worker_is_retried``.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import medseg
from medseg.batch import Case, discover_cases, output_path, provenance_path, run_batch
from medseg.core import Volume
from medseg.errors import OutputError
from medseg.io import atomic_path, write_text_atomic
from tests.robustness.conftest import ROOT

WRITER = textwrap.dedent(
    """
    import sys, numpy as np, medseg
    from medseg.core import Volume
    arr = np.random.default_rng(0).random((1, 384, 384, 300), dtype=np.float32)
    print("ready", flush=True)
    medseg.write(Volume(arr, np.eye(4)), sys.argv[1])
    print("done", flush=True)
    """
)


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name]


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_sigkill_while_writing_leaves_no_partial_output(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / "out"
    final = out / f"big{suffix}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(final)], stdout=subprocess.PIPE, text=True, env=env
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not (out.exists() and _temp_files(out)) and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)  # the temp file exists: the write is under way
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the writer finished before it could be killed; make the volume bigger"
    assert not final.exists(), "a killed write left a file under the final name"
    leftovers = list(out.iterdir())
    assert leftovers and all(p.name.startswith(".") and ".tmp" in p.name for p in leftovers), leftovers
    # the hidden temp file is never taken for a case or an output
    medseg.write(Volume(np.ones((1, 3, 3, 3), np.float32), np.eye(4)), out / "real.nii.gz")
    assert [c.case_id for c in discover_cases(out)] == ["real"]
    assert not provenance_path(out, "big").exists()


def test_killed_write_then_rewrite_gives_the_complete_file(tmp_path: Path) -> None:
    target = tmp_path / "img.nii.gz"
    vol = Volume(np.arange(60, dtype=np.float32).reshape(1, 5, 4, 3), np.diag([2.0, 2.0, 3.0, 1.0]))
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:  # the process dies inside the write
        tmp.write_bytes(b"\x1f\x8b partial")
        raise RuntimeError("killed")
    assert not target.exists() and not list(tmp_path.iterdir())
    medseg.write(vol, target)
    assert np.array_equal(medseg.read(target).numpy(), vol.numpy())


def _enospc(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["fsync", "replace", "mkdir"])
def test_full_disk_at_each_step_of_an_atomic_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    out = tmp_path / "out" / "sub"
    vol = Volume(np.ones((1, 4, 4, 4), np.float32), np.eye(4))
    target = {"fsync": "os.fsync", "replace": "os.replace", "mkdir": "pathlib.Path.mkdir"}[where]
    monkeypatch.setattr(target, _enospc)
    with pytest.raises(OutputError, match=r"No space left on device") as info:
        medseg.write(vol, out / "img.nii.gz")
    assert "img.nii.gz" in str(info.value) or "sub" in str(info.value)
    monkeypatch.undo()
    assert not (out / "img.nii.gz").exists()
    assert not out.exists() or not list(out.iterdir()), "a temp file was left behind"


class _WritingProcessor:
    """Writes an image and a JSON sidecar per case through medseg's atomic writers."""

    def fingerprint(self) -> str:
        return "writing-processor-v1"

    def load(self, case: Case) -> Volume:
        return medseg.read(case.images[0])

    def run(self, loaded: Volume) -> Volume:
        return loaded.replace(array=(loaded.numpy() > 0.5).astype(np.uint8), kind="label")

    def save(self, case: Case, result: Volume, out_dir: Path) -> dict[str, Path]:
        mask = medseg.write(result, output_path(out_dir, f"{case.case_id}.nii.gz"))
        stats = write_text_atomic(
            output_path(out_dir, f"{case.case_id}.json"), f'{{"voxels": {int(result.numpy().sum())}}}'
        )
        return {"mask": mask, "stats": stats}


def _cases(folder: Path, n: int) -> list[Case]:
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        medseg.write(Volume(rng.random((1, 6, 5, 4)).astype(np.float32), np.eye(4)), folder / f"case_{i:03d}.nii.gz")
    return discover_cases(folder)


@pytest.mark.parametrize("victim", ["case_001.nii.gz", "case_001.json", "case_001.provenance.json"])
def test_full_disk_fails_one_case_and_the_batch_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, victim: str
) -> None:
    cases = _cases(tmp_path / "in", 3)
    out = tmp_path / "out"
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == victim:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    report = run_batch(cases, _WritingProcessor(), out, progress=False)
    status = {r.case_id: r for r in report.rows}
    assert status["case_001"].status == "failed"
    assert "No space left on device" in status["case_001"].error
    assert status["case_000"].status == status["case_002"].status == "succeeded"
    assert not provenance_path(out, "case_001").exists(), "a failed case must not look done"
    assert not [p for p in out.iterdir() if ".tmp" in p.name], "temp files left behind"
    monkeypatch.undo()
    again = run_batch(cases, _WritingProcessor(), out, progress=False)
    assert {r.case_id: r.status for r in again.rows} == {
        "case_000": "skipped",
        "case_001": "succeeded",
        "case_002": "skipped",
    }
