"""Faults injected into a batch's output folder: altered outputs, a second run, signals, leftover temp files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medseg.batch import discover_cases, provenance_path, run_batch
from medseg.errors import OutputError
from medseg.io.lock import folder_lock
from tests.batch.conftest import write_cases
from tests.batch.processors import ThresholdProcessor

ROOT = Path(__file__).resolve().parents[2]


def _status(report) -> dict[str, str]:
    return {r.case_id: r.status for r in report.rows}


@pytest.mark.parametrize("fault", ["truncate", "flip", "delete"])
def test_an_altered_output_makes_its_case_run_again(tmp_path: Path, fault: str) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_cases(src, 3)
    cases = discover_cases(src)
    run_batch(cases, ThresholdProcessor(), out, progress=False)
    good = (out / "case_002.nii.gz").read_bytes()
    target = out / "case_002.nii.gz"
    if fault == "truncate":
        os.truncate(target, len(good) // 2)
    elif fault == "flip":
        data = bytearray(good)
        data[len(data) // 2] ^= 0xFF  # same size, other content
        target.write_bytes(bytes(data))
    else:
        target.unlink()
    again = run_batch(cases, ThresholdProcessor(), out, progress=False)
    assert _status(again) == {"case_000": "skipped", "case_001": "skipped", "case_002": "succeeded"}
    assert target.read_bytes() == good  # rebuilt, identical to the first run


def test_a_second_run_on_a_folder_in_use_stops_at_once_naming_the_first(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_cases(src, 1)
    with folder_lock(out), pytest.raises(OutputError, match=r"in use by pid \d+ on .*, since .*: .*wait for that run"):
        run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False)
    assert not provenance_path(out, "case_000").exists()
    # shards share the folder; the same shard twice, or a whole run beside shards, does not
    with folder_lock(out, (0, 2)), folder_lock(out, (1, 2)):
        with pytest.raises(OutputError, match="part 0 of 2 is in use"):
            run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False, num_parts=2, part_id=0)
        with pytest.raises(OutputError, match="in use by 2 sharded run"):
            run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False)
    # released: the folder is free again and no lock file is left
    assert run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False).succeeded == 1
    assert not list(out.glob(".medseg*.lock"))


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_cases(src, 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys,time; sys.path.insert(0,{str(ROOT)!r})\n"
         f"from medseg.io.lock import folder_lock\nwith folder_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(OutputError, match=f"pid {holder.pid}"):
        run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False)
    holder.kill()
    holder.wait()
    holder.stdout.close()
    assert (out / ".medseg.lock").exists()  # kill -9 left the file...
    assert run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False).succeeded == 1  # ...not the lock


def test_temp_files_of_killed_runs_are_removed_by_the_next_run(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_cases(src, 1)
    out.mkdir()
    left = [out / ".case_000.nii.gz.0123abcd.tmp.nii.gz", out / "sub" / ".x.json.deadbeef.tmp.json"]
    for p in left:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"half")
    (out / ".keep").write_text("not ours")
    run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False)
    assert not any(p.exists() for p in left) and (out / ".keep").exists()


SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from medseg.cli.main import main
sys.argv = ["medseg"]
from medseg.batch import discover_cases, run_batch
from tests.batch.processors import ThresholdProcessor
report = run_batch(discover_cases({src!r}), ThresholdProcessor(delay_s=0.5), {out!r}, progress=False)
print("interrupted", report.interrupted, len(report.rows), report.planned, flush=True)
sys.exit(report.exit_code)
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_finishes_the_current_case_and_writes_the_report(tmp_path: Path, sig: int, code: int) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_cases(src, 8)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(root=str(ROOT), src=str(src), out=str(out)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not provenance_path(out, "case_000").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    _, name, done, planned = stdout.split()
    assert name == signal.Signals(sig).name and int(planned) == 8 and 1 <= int(done) < 8
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["interrupted"] == name and report["summary"]["cases"] == int(done)
    for row in report["cases"]:  # every case reported done is complete
        assert row["status"] == "succeeded" and provenance_path(out, row["case_id"]).exists()
    assert not [p for p in out.rglob(".*") if ".tmp" in p.name] and not (out / ".medseg.lock").exists()
    # re-running the same command continues where it stopped
    rest = run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False)
    assert rest.skipped == int(done) and rest.succeeded == 8 - int(done)
