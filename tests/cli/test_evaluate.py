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
