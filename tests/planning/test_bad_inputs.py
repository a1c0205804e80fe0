"""Datasets the planner refuses, each with one clear line naming the file and the fix."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medseg.cli.main import main
from medseg.core import make_affine

from .conftest import box_case, dataset_json, write_case

AFFINE = make_affine((1.0, 1.0, 3.0))


def _plan_error(capsys, data: Path, tmp_path: Path) -> str:
    code = main(["plan", str(data), "-o", str(tmp_path / "out"), "--no-probe"])
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def _good(root: Path, n: int = 2) -> Path:
    for i in range(n):
        write_case(root, f"c{i}", *box_case(), AFFINE)
    dataset_json(root, {"background": 0, "organ": 1, "cyst": 2})
    return root


def test_empty_dataset(tmp_path: Path, capsys) -> None:
    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    dataset_json(root, {"background": 0, "organ": 1})
    assert "imagesTr: no images found" in _plan_error(capsys, root, tmp_path)
    manifest = tmp_path / "cases.csv"
    manifest.write_text("image,label\n")
    assert "the manifest has a header but no cases" in _plan_error(capsys, manifest, tmp_path)


def test_labels_missing(tmp_path: Path, capsys) -> None:
    root = _good(tmp_path / "ds")
    (root / "labelsTr" / "c1.nii.gz").unlink()
    assert "no label for case 'c1'" in _plan_error(capsys, root, tmp_path)
    # a manifest row without a label file
    rows = [{"image": str(root / "imagesTr" / f"c{i}_0000.nii.gz"), "label": ""} for i in range(2)]
    rows[0]["label"] = str(root / "labelsTr" / "c0.nii.gz")
    manifest = tmp_path / "cases.csv"
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "label"])
        w.writeheader()
        w.writerows(rows)
    err = _plan_error(capsys, manifest, tmp_path)
    assert "1 of 2 cases have no label file (c1)" in err and "CSV column 'label'" in err


def test_one_case(tmp_path: Path, capsys) -> None:
    root = _good(tmp_path / "ds", n=1)
    err = _plan_error(capsys, root, tmp_path)
    assert "only one case ('c0')" in err and "at least 2 labelled cases" in err


def test_mixed_channel_counts(tmp_path: Path, capsys) -> None:
    root = _good(tmp_path / "ds")
    image, label = box_case()
    # c1's image file holds two channels (a 4D NIfTI), c0's one
    write_case(root, "c1", np.stack([image, image]), label, AFFINE)
    err = _plan_error(capsys, root, tmp_path)
    assert "cases have different channel counts" in err and "1 channel(s): c0" in err and "2 channel(s): c1" in err
    # nnU-Net layout with a channel file missing for one case
    root2 = _good(tmp_path / "ds2")
    write_case(root2, "c0", np.stack([image, image]), label, AFFINE, channels=2)
    dataset_json(root2, {"background": 0, "organ": 1, "cyst": 2}, channels=("T1", "T2"))
    assert "case 'c1' has channels [0], expected 0..1" in _plan_error(capsys, root2, tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"numTraining": 5}, "numTraining is 5 but 2 labelled cases were found"),
        ({"channel_names": {"0": "T1", "1": "T2"}}, "channel_names declares 2 channels (T1, T2) but each case has 1"),
        ({"file_ending": ".nrrd"}, "file_ending is '.nrrd' but"),
        ({"labels": {"background": 0, "organ": 1}}, "holds values [2] that are not among the declared labels [0, 1]"),
    ],
)
def test_dataset_json_that_lies_about_the_files(tmp_path: Path, capsys, change: dict, message: str) -> None:
    root = _good(tmp_path / "ds")
    meta = json.loads((root / "dataset.json").read_text())
    meta.update(change)
    (root / "dataset.json").write_text(json.dumps(meta))
    err = _plan_error(capsys, root, tmp_path)
    assert message in err and ("dataset.json" in err or "label" in err)
