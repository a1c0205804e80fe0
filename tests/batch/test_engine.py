"""run_batch: outputs, fault isolation, resume, re-run on config change, reports, provenance, sharding."""

from __future__ import annotations

import csv
import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import medseg
from medseg.batch import (
    Case,
    discover_cases,
    is_done,
    provenance_path,
    read_provenance,
    run_batch,
    select_part,
)
from medseg.errors import ConfigError, InputError
from tests.batch.conftest import write_cases
from tests.batch.processors import ThresholdProcessor


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.nii.gz"))}


def _corrupt_folder(tmp_path: Path) -> Path:
    """Three good cases, a truncated NIfTI, a text file named .nii.gz and a 2-channel (wrong) image."""
    src = tmp_path / "in"
    good = write_cases(src, 3)
    data = good[0].read_bytes()
    (src / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    (src / "text.nii.gz").write_text("patient name: DOE^JOHN")
    two = medseg.read(good[1])
    medseg.write(two.replace(array=np.concatenate([two.numpy()] * 2)), src / "twochannel.nii.gz")
    return src


def test_good_and_corrupt_cases(tmp_path: Path) -> None:
    src = _corrupt_folder(tmp_path)
    out = tmp_path / "out"
    report = run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False)
    assert (report.succeeded, report.skipped, report.failed) == (3, 0, 3)
    assert report.exit_code == 1
    for i in range(3):
        label = medseg.read(out / f"case_{i:03d}.nii.gz")
        image = medseg.read(src / f"case_{i:03d}.nii.gz")
        np.testing.assert_array_equal(label.numpy(), (image.numpy() > 0).astype(np.uint8))
        np.testing.assert_allclose(label.affine, image.affine)
    rows = {r.case_id: r for r in report.rows}
    assert rows["truncated"].error.startswith("InputError: truncated.nii.gz:")
    assert rows["text"].error.startswith("InputError: text.nii.gz: not a readable NIfTI")
    assert "2 channels, the pipeline expects 1" in rows["twochannel"].error
    assert str(src) not in rows["text"].error  # full paths (patient folders) shortened to file names
    for cid in ("truncated", "text", "twochannel"):
        assert not provenance_path(out, cid).exists()
        assert not (out / f"{cid}.nii.gz").exists()
    with (out / "report.csv").open() as fh:
        csv_rows = {r["case_id"]: r for r in csv.DictReader(fh)}
    assert csv_rows["case_001"]["status"] == "succeeded"
    assert csv_rows["case_001"]["outputs"] == "label=case_001.nii.gz"
    assert csv_rows["text"]["status"] == "failed"
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert summary | {"seconds": 0, "started": ""} == {
        "cases": 6,
        "succeeded": 3,
        "skipped": 0,
        "failed": 3,
        "failure_reasons": {"InputError": 3},
        "executor": "inprocess",
        "seconds": 0,
        "started": "",
        "part_id": 0,
        "num_parts": 1,
        "with_warnings": 0,
        "interrupted": None,
        "planned": 6,
        "qc_threshold": 0.5,
        "need_review": 0,  # this processor gives no QC record
        "qc_scored": 0,
    }
    html = (out / "report.html").read_text()
    assert "3 succeeded, 0 skipped, 3 failed" in html and "twochannel" in html
    assert not list(out.glob(".*"))  # no temporary files left


def test_provenance_records_inputs_pipeline_versions_timings(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_cases(src, 1)
    out = tmp_path / "out"
    run_batch(discover_cases(src), ThresholdProcessor(threshold=5.0), out, progress=False)
    record = read_provenance(out, "case_000")
    assert record is not None
    assert record["case_id"] == "case_000" and record["status"] == "succeeded"
    (image,) = record["inputs"]["images"]
    import hashlib

    assert image == {
        "name": "case_000.nii.gz",
        "sha256": hashlib.sha256((src / "case_000.nii.gz").read_bytes()).hexdigest(),
        "bytes": (src / "case_000.nii.gz").stat().st_size,
        "files": 1,
        # where it came from, as a hash: the full path may name the patient
        "location": hashlib.sha256(str((src / "case_000.nii.gz").resolve()).encode()).hexdigest()[:16],
    }
    assert record["pipeline"]["pipeline"] == "threshold"
    assert record["pipeline"]["config"]["threshold"] == 5.0
    assert record["environment"]["medseg"] == medseg.__version__
    assert record["environment"]["torch"] == torch.__version__
    assert record["device"] == "cpu" or record["device"].startswith("cuda")
    assert set(record["timings_s"]) == {"hash", "load", "run", "save"}
    mask = (out / "case_000.nii.gz").read_bytes()
    assert record["outputs"] == {
        "label": {"path": "case_000.nii.gz", "bytes": len(mask), "sha256": hashlib.sha256(mask).hexdigest()}
    }
    assert str(src) not in json.dumps(record)


def test_resume_skips_done_cases_and_changed_config_reruns(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_cases(src, 3)
    out = tmp_path / "out"
    cases = discover_cases(src)
    first = run_batch(cases, ThresholdProcessor(), out, progress=False)
    assert first.succeeded == 3
    before = _bytes(out)
    again = run_batch(cases, ThresholdProcessor(), out, progress=False)
    assert (again.succeeded, again.skipped) == (0, 3)
    assert again.rows[0].outputs == {"label": "case_000.nii.gz"}
    assert _bytes(out) == before

    # a missing output, or a changed input, makes only that case run again
    (out / "case_001.nii.gz").unlink()
    image = medseg.read(src / "case_002.nii.gz")
    medseg.write(image.replace(array=image.numpy() + 1), src / "case_002.nii.gz")
    partial = run_batch(cases, ThresholdProcessor(), out, progress=False)
    assert {r.case_id: r.status for r in partial.rows} == {
        "case_000": "skipped",
        "case_001": "succeeded",
        "case_002": "succeeded",
    }

    changed = run_batch(cases, ThresholdProcessor(threshold=100.0), out, progress=False)
    assert changed.succeeded == 3
    assert _bytes(out) != before
    forced = run_batch(cases, ThresholdProcessor(threshold=100.0), out, force=True, progress=False)
    assert forced.succeeded == 3


def test_relative_output_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cases(tmp_path / "in", 2)
    monkeypatch.chdir(tmp_path)

    class PlainJoin(ThresholdProcessor):  # joins names to out_dir, as the pipeline's exporters do
        def save(self, case: Case, result, out_dir: Path) -> dict[str, Path]:
            return {"label": medseg.write(result, out_dir / f"{case.case_id}.nii.gz")}

    report = run_batch(discover_cases(Path("in")), PlainJoin(), Path("runs") / "out", progress=False)
    assert report.succeeded == 2
    assert (tmp_path / "runs" / "out" / "case_000.nii.gz").is_file()


def test_corrupt_provenance_means_not_done(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_cases(src, 1)
    out = tmp_path / "out"
    report = run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False)
    fp = report.rows[0].fingerprint
    assert is_done(out, "case_000", fp) is not None
    assert is_done(out, "case_000", "other") is None
    provenance_path(out, "case_000").write_text("{truncated")
    assert is_done(out, "case_000", fp) is None
    assert run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False).succeeded == 1


def test_disk_full_fails_the_case_and_the_batch_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in"
    write_cases(src, 3)
    out = tmp_path / "out"
    import nibabel

    real_write = nibabel.Nifti1Image.to_file_map

    def write(img, file_map=None, **kwargs):  # type: ignore[no-untyped-def]
        holder = (file_map or img.file_map)["image"]
        if "case_001" in str(holder.filename):
            holder.fileobj.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(img, file_map, **kwargs)

    monkeypatch.setattr(nibabel.Nifti1Image, "to_file_map", write)
    report = run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False)
    rows = {r.case_id: r for r in report.rows}
    assert rows["case_001"].status == "failed"
    assert rows["case_001"].error.startswith("OutputError:") and "No space left on device" in rows["case_001"].error
    assert rows["case_000"].status == rows["case_002"].status == "succeeded"
    assert not (out / "case_001.nii.gz").exists()
    assert not provenance_path(out, "case_001").exists()
    assert not list(out.glob(".*"))
    monkeypatch.setattr(nibabel.Nifti1Image, "to_file_map", real_write)
    retry = run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False)
    assert {r.case_id: r.status for r in retry.rows}["case_001"] == "succeeded"
    assert retry.skipped == 2


def test_out_of_memory_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in"
    write_cases(src, 2)
    processor = ThresholdProcessor()
    real_run = processor.run

    def run(loaded):  # type: ignore[no-untyped-def]
        if loaded[0] == "case_000":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_run(loaded)

    monkeypatch.setattr(processor, "run", run)
    report = run_batch(discover_cases(src), processor, tmp_path / "out", progress=False)
    rows = {r.case_id: r for r in report.rows}
    assert rows["case_000"].error == "out of memory: CUDA out of memory. Tried to allocate 20.00 GiB"
    assert rows["case_001"].status == "succeeded"
    assert report.failure_reasons() == {"out of memory": 1}


def test_outputs_outside_the_folder_fail_the_case(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_cases(src, 1)

    class Escaping(ThresholdProcessor):
        def save(self, case: Case, result: medseg.Volume, out_dir: Path) -> dict[str, Path]:
            return {"label": medseg.write(result, out_dir / ".." / "escaped.nii.gz")}

    report = run_batch(discover_cases(src), Escaping(), tmp_path / "out", progress=False)
    assert report.failed == 1
    assert "outside the output folder" in report.rows[0].error
    assert not provenance_path(tmp_path / "out", "case_000").exists()


def test_warnings_are_recorded_per_case(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_cases(src, 3)
    out = tmp_path / "out"
    processor = ThresholdProcessor(warn_on=("case_001",))
    for executor in ("inprocess", "overlap"):
        report = run_batch(discover_cases(src), processor, out, executor=executor, force=True, progress=False)
        rows = {r.case_id: r for r in report.rows}
        assert rows["case_001"].warnings == ("UserWarning: case_001: suspicious intensities",)
        assert rows["case_000"].warnings == rows["case_002"].warnings == ()
        assert read_provenance(out, "case_001")["warnings"] == list(rows["case_001"].warnings)


def test_overlap_executor_matches_inprocess(tmp_path: Path) -> None:
    src = _corrupt_folder(tmp_path)
    cases = discover_cases(src)
    a = run_batch(cases, ThresholdProcessor(), tmp_path / "a", progress=False)
    b = run_batch(
        cases, ThresholdProcessor(), tmp_path / "b", executor="overlap", prefetch=2, workers=2, progress=False
    )
    assert [(r.case_id, r.status, r.error) for r in a.rows] == [(r.case_id, r.status, r.error) for r in b.rows]
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    assert len(_bytes(tmp_path / "a")) == 3


def test_sharding_covers_every_case_exactly_once(tmp_path: Path) -> None:
    cases = [Case(f"c{i:02d}", (tmp_path / f"c{i}.nii.gz",)) for i in range(11)]
    for k in (1, 2, 3, 4, 11, 15):
        parts = [select_part(list(reversed(cases)), k, i) for i in range(k)]
        ids = [c.case_id for part in parts for c in part]
        assert sorted(ids) == [c.case_id for c in cases]
        assert len(ids) == len(set(ids))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert [c.case_id for c in select_part(cases, 4, 1)] == ["c01", "c05", "c09"]
    with pytest.raises(ConfigError, match="part_id must be in 0..3"):
        select_part(cases, 4, 4)
    with pytest.raises(ConfigError, match="num_parts"):
        select_part(cases, 0, 0)


def test_sharded_runs_write_their_own_reports(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_cases(src, 3)
    out = tmp_path / "out"
    cases = discover_cases(src)
    reports = [run_batch(cases, ThresholdProcessor(), out, num_parts=2, part_id=i, progress=False) for i in (0, 1)]
    assert [len(r.rows) for r in reports] == [2, 1]
    assert (out / "report.part0of2.json").exists() and (out / "report.part1of2.csv").exists()
    assert len(_bytes(out)) == 3


def test_invalid_options_and_duplicate_ids(tmp_path: Path) -> None:
    cases = [Case("a", (tmp_path / "a.nii.gz",))]
    with pytest.raises(ConfigError, match="did you mean 'overlap'"):
        run_batch(cases, ThresholdProcessor(), tmp_path / "o", executor="overlapp")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="prefetch"):
        run_batch(cases, ThresholdProcessor(), tmp_path / "o", prefetch=0)
    with pytest.raises(ConfigError, match="scheduler"):
        run_batch(cases, ThresholdProcessor(), tmp_path / "o", scheduler="tcp://x:1")
    with pytest.raises(ConfigError, match="output folder holds the input a.nii.gz of case 'a'"):
        run_batch(cases, ThresholdProcessor(), tmp_path)
    with pytest.raises(InputError, match="two cases share the id 'a'"):
        run_batch([*cases, Case("a", (tmp_path / "b.nii.gz",))], ThresholdProcessor(), tmp_path / "o")


def test_missing_manifest_input_fails_only_that_case(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_cases(src, 1)
    (tmp_path / "m.csv").write_text("case_id,image\nok,in/case_000.nii.gz\ngone,in/missing.nii.gz\n")
    report = run_batch(discover_cases(tmp_path / "m.csv"), ThresholdProcessor(), tmp_path / "out", progress=False)
    rows = {r.case_id: r for r in report.rows}
    assert rows["ok"].status == "succeeded"
    assert (
        rows["gone"].error == "InputError: missing.nii.gz: no such input file; check the manifest or the input folder"
    )


def test_progress_and_verbose_lines_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _corrupt_folder(tmp_path)
    run_batch(discover_cases(src), ThresholdProcessor(), tmp_path / "out", progress=True, verbose=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "case_000: succeeded" in captured.err
    assert "text: failed" in captured.err
    assert "6/6" in captured.err
    assert "DOE" not in captured.err
    run_batch(discover_cases(src), ThresholdProcessor(), tmp_path / "out", progress=False)
    assert capsys.readouterr().err == ""


def test_overlap_loads_next_cases_while_running_and_runs_in_one_thread(tmp_path: Path) -> None:
    import threading
    import time

    src = tmp_path / "in"
    write_cases(src, 5)
    events: list[tuple[str, str, float, float, str]] = []
    lock = threading.Lock()

    class Recording(ThresholdProcessor):
        def load(self, case: Case):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            time.sleep(0.05)
            loaded = super().load(case)
            with lock:
                events.append(("load", case.case_id, t0, time.perf_counter(), threading.current_thread().name))
            return loaded

        def run(self, loaded):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            time.sleep(0.15)
            result = super().run(loaded)
            with lock:
                events.append(("run", loaded[0], t0, time.perf_counter(), threading.current_thread().name))
            return result

    report = run_batch(
        discover_cases(src), Recording(), tmp_path / "out", executor="overlap", prefetch=2, progress=False
    )
    assert report.succeeded == 5
    runs = [e for e in events if e[0] == "run"]
    loads = [e for e in events if e[0] == "load"]
    assert {e[4] for e in runs} == {threading.current_thread().name}  # one thread owns the device
    assert all(e[4] != threading.current_thread().name for e in loads)
    overlapping = [(r[1], ld[1]) for r in runs for ld in loads if ld[2] < r[3] and r[2] < ld[3] and ld[1] != r[1]]
    assert len(overlapping) >= 3  # the next cases were loaded while earlier ones ran


def test_repeated_warnings_recorded_each_time_deprecations_left_out(tmp_path: Path) -> None:
    import warnings

    src = tmp_path / "in"
    write_cases(src, 2)

    class Noisy(ThresholdProcessor):
        def run(self, loaded):  # type: ignore[no-untyped-def]
            warnings.warn("old API", DeprecationWarning, stacklevel=1)
            warnings.warn("clipped intensities", UserWarning, stacklevel=1)
            return super().run(loaded)

    report = run_batch(discover_cases(src), Noisy(), tmp_path / "out", progress=False)
    assert [r.warnings for r in report.rows] == [("UserWarning: clipped intensities",)] * 2


def test_a_case_id_never_overwrites_another_inputs_results(tmp_path: Path, dicom_series) -> None:
    """pA/CT then pB/CT into one folder: named by folder both are 'CT'; the second is refused, A's results stay."""
    for patient, seed in (("pA", 0), ("pB", 1)):
        (tmp_path / patient).mkdir()
        dicom_series(f"{patient}_ct", shape=(10, 8, 4), seed=seed, patient_id=patient).rename(tmp_path / patient / "CT")
    out = tmp_path / "out"
    a = run_batch(discover_cases(tmp_path / "pA" / "CT", case_ids="folder"), ThresholdProcessor(), out, progress=False)
    assert a.succeeded == 1
    kept = _bytes(out)
    b = run_batch(
        discover_cases(tmp_path / "pB" / "CT", case_ids="folder"), ThresholdProcessor(), out, progress=False, force=True
    )
    assert b.failed == 1
    assert "already names the results of another input" in b.rows[0].error
    assert "--case-ids series" in b.rows[0].error
    assert _bytes(out) == kept  # patient A's mask untouched, even with --force
    # the same input again (e.g. after editing it in place) still runs as before
    again = run_batch(
        discover_cases(tmp_path / "pA" / "CT", case_ids="folder"), ThresholdProcessor(), out, progress=False
    )
    assert again.skipped == 1
    # named by patient (the default), both land side by side
    for p in ("pA", "pB"):
        assert run_batch(discover_cases(tmp_path / p / "CT"), ThresholdProcessor(), out, progress=False).exit_code == 0
    assert {"pA.nii.gz", "pB.nii.gz", "CT.nii.gz"} <= set(_bytes(out))


def test_without_a_terminal_progress_is_one_line_per_case(tmp_path: Path, capsys) -> None:
    """``medseg predict ... 2> log``: no progress-bar frames, one line per case."""
    src = tmp_path / "in"
    write_cases(src, 3)
    run_batch(discover_cases(src), ThresholdProcessor(), tmp_path / "out", progress=True)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "\r" not in err and len(lines) == 3 and all(": succeeded (" in line for line in lines)
