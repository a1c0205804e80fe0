"""``medseg evaluate`` as a subprocess: pairing, CSV and JSON reports, grid mismatch errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from medseg.core import Volume, make_affine
from medseg.io import write
from medseg.metrics import dice

AFFINE = make_affine((0.8, 0.9, 2.0), (10.0, -5.0, 3.0))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medseg.cli", *args], capture_output=True, text=True, timeout=120)


def labels(seed: int) -> np.ndarray:
    a = np.zeros((1, 24, 22, 10), np.uint8)
    a[0, 4:14, 4:14, 2:8] = 1
    a[0, 16:20, 15:20, 3:6] = 2
    rng = np.random.default_rng(seed)
    a[0][rng.random(a.shape[1:]) < 0.02] = 0
    return a


def make_cases(tmp_path: Path) -> tuple[Path, Path]:
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for i, case in enumerate(["a", "b"]):
        write(Volume(labels(i), AFFINE, kind="label"), gt / f"{case}.nii.gz")
        write(Volume(labels(i + 10), AFFINE, kind="label"), pred / f"{case}.nrrd")
    return pred, gt


def test_evaluate_folders_writes_csv_and_summary(tmp_path: Path) -> None:
    pred, gt = make_cases(tmp_path)
    out = tmp_path / "report" / "report.csv"
    res = run("evaluate", "--pred", str(pred), "--gt", str(gt), "-o", str(out), "--tolerance-mm", "2", "--json")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [(r["case"], r["label"]) for r in rows] == [("a", "1"), ("a", "2"), ("b", "1"), ("b", "2")]
    expected = dice(labels(10), labels(0), label=1)
    assert abs(float(rows[0]["dice"]) - expected) < 1e-5
    summary = json.loads(out.with_suffix(".json").read_text())
    assert set(summary) == {"1", "2"}
    assert set(summary["1"]["dice"]) == {"mean", "median", "std", "n", "n_nan"}
    assert json.loads(res.stdout)["summary"]["2"]["dice"]["n"] == 2


def test_single_files_and_labels_option(tmp_path: Path) -> None:
    pred, gt = make_cases(tmp_path)
    out = tmp_path / "one.csv"
    res = run("evaluate", "--pred", str(pred / "a.nrrd"), "--gt", str(gt / "a.nii.gz"), "-o", str(out), "--labels", "2")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["label"] for r in rows] == ["2"]
    assert "label 2" in res.stdout


def test_grid_mismatch_names_both_files(tmp_path: Path) -> None:
    pred, gt = make_cases(tmp_path)
    write(Volume(labels(3), make_affine((1.0, 1.0, 1.0)), kind="label"), pred / "b.nrrd")
    res = run("evaluate", "--pred", str(pred), "--gt", str(gt), "-o", str(tmp_path / "r.csv"))
    assert res.returncode == 1
    assert "b.nrrd" in res.stderr and "b.nii.gz" in res.stderr and "grid" in res.stderr
    assert not (tmp_path / "r.csv").exists()


def test_missing_prediction_and_bad_labels(tmp_path: Path) -> None:
    pred, gt = make_cases(tmp_path)
    (pred / "b.nrrd").unlink()
    res = run("evaluate", "--pred", str(pred), "--gt", str(gt), "-o", str(tmp_path / "r.csv"))
    assert res.returncode == 1 and "no prediction" in res.stderr and " b" in res.stderr
    res = run("evaluate", "--pred", str(pred), "--gt", str(gt), "-o", str(tmp_path / "r.csv"), "--labels", "x")
    assert res.returncode == 1 and "--labels" in res.stderr


def _one_line_error(res: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert res.returncode == 1, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_predictions_that_are_not_label_maps_are_refused(tmp_path: Path) -> None:
    pred, gt = make_cases(tmp_path)
    out = str(tmp_path / "r.csv")
    fractional = labels(0).astype(np.float32)
    fractional[0, 1, 1, 1], fractional[0, 2, 2, 2] = 0.5, 1.7
    write(Volume(fractional, AFFINE), pred / "a.nrrd")
    _one_line_error(run("evaluate", "--pred", str(pred), "--gt", str(gt), "-o", out), "a.nrrd", "non-integer")
    negative = labels(0).astype(np.int16)
    negative[0, 1, 1, 1] = -3
    write(Volume(negative, AFFINE), pred / "a.nrrd")
    _one_line_error(run("evaluate", "--pred", str(pred), "--gt", str(gt), "-o", out), "a.nrrd", "negative")
    image = np.random.default_rng(0).integers(0, 226, size=(1, 24, 22, 10)).astype(np.uint8)
    write(Volume(image, AFFINE), pred / "a.nrrd")
    _one_line_error(run("evaluate", "--pred", str(pred), "--gt", str(gt), "-o", out), "a.nrrd", "looks like an image")
    assert not (tmp_path / "r.csv").exists()


def test_labels_absent_from_the_reference_are_warned_and_background_is_not_a_label(tmp_path: Path) -> None:
    pred, gt = make_cases(tmp_path)
    extra = labels(10)
    extra[0, 0:2, 0:2, 0:2] = 5
    write(Volume(extra, AFFINE, kind="label"), pred / "a.nrrd")
    res = run("evaluate", "--pred", str(pred), "--gt", str(gt), "-o", str(tmp_path / "r.csv"))
    assert res.returncode == 0, res.stderr
    assert "warning: a: prediction holds labels [5] that are absent from the reference" in res.stderr
    assert "label 0" not in res.stdout and "label 5" in res.stdout
    res = run("evaluate", "--pred", str(pred), "--gt", str(gt), "-o", str(tmp_path / "r.csv"), "--labels", "1,2")
    assert "not among the declared labels [1, 2]" in res.stderr and "label 5" not in res.stdout
    _one_line_error(
        run("evaluate", "--pred", str(pred), "--gt", str(gt), "-o", str(tmp_path / "r.csv"), "--labels", "0,1"),
        "0 is the background",
    )


def test_folder_with_other_outputs_evaluates_the_label_maps(tmp_path: Path) -> None:
    pred, gt = make_cases(tmp_path)
    (pred / "a.nrrd").unlink()
    write(Volume(labels(10), AFFINE, kind="label"), pred / "a.nii.gz")  # the plain label map...
    write(Volume(labels(11), AFFINE, kind="label"), pred / "a.seg.nrrd")  # ...beside a Slicer segmentation
    (pred / "b.nrrd").rename(pred / "b.seg.nrrd")  # only a Slicer segmentation: used
    (pred / "a_preview.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (pred / "a_stats.json").write_text("{}")
    out = tmp_path / "r.csv"
    res = run("evaluate", "--pred", str(pred), "--gt", str(gt), "-o", str(out))
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert {r["case"] for r in rows} == {"a", "b"}
    assert abs(float(rows[0]["dice"]) - dice(labels(10), labels(0), label=1)) < 1e-5  # a.nii.gz, not a.seg.nrrd
    assert "left out of the evaluation" in res.stderr and "a_preview.png" in res.stderr


def test_grid_mismatch_says_what_differs(tmp_path: Path) -> None:
    pred, gt = make_cases(tmp_path)
    shifted = make_affine((0.8, 0.9, 2.0), (10.0, -5.0, 5.5))  # same shape and spacing, origin 2.5 mm off
    write(Volume(labels(3), shifted, kind="label"), pred / "b.nrrd")
    res = run("evaluate", "--pred", str(pred), "--gt", str(gt), "-o", str(tmp_path / "r.csv"))
    _one_line_error(res, "b.nrrd", "b.nii.gz", "origin", "2.5 mm apart")
    assert "spacing" not in res.stderr.split("origin")[0].split("grid of")[1]


def test_a_seg_reference_is_refused_with_the_way_to_a_label_map(tmp_path: Path) -> None:
    """A SEG holds its own frames and segment order: evaluate points at dataset convert, which reads it as training does."""
    from tests.training.test_clinical import _patient

    _, seg, mask = _patient(tmp_path / "export", 0, "CT", "SEG", {1: "Liver", 2: "Spleen"}, fmt="seg")
    pred = tmp_path / "pred.nii.gz"
    write(Volume(mask[None].astype(np.uint8), AFFINE, kind="label"), pred)
    res = run("evaluate", "--pred", str(pred), "--gt", str(seg), "-o", str(tmp_path / "r.csv"))
    assert res.returncode == 1
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and str(seg) in err and "DICOM SEG" in err and "medseg dataset convert" in err
