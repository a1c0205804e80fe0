"""Datasets whose files contradict their dataset.json are refused or flagged, never planned in silence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from medseg.cli.main import main
from medseg.core import Volume, make_affine
from medseg.io import write

from .conftest import box_case, dataset_json, write_case

AFFINE = make_affine((1.0, 1.0, 3.0))


def _ct_case(root: Path, case_id: str, seed: int) -> None:
    image, label = box_case(seed=seed)
    write_case(root, case_id, np.where(image == 0, -1000.0, image), label, AFFINE)  # air around the body


def test_mr_cases_in_a_ct_dataset_are_flagged(tmp_path: Path, capsys) -> None:
    root = tmp_path / "ds"
    for i in range(3):
        _ct_case(root, f"ct{i}", i)
    image, label = box_case(seed=5)
    write_case(root, "mr0", image * 3 + 20, label, AFFINE)  # non-negative intensities: an MR
    dataset_json(root, {"background": 0, "organ": 1, "cyst": 2})
    assert main(["plan", str(root), "-o", str(tmp_path / "out"), "--no-probe"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "declared CT but 1 of 4 cases (mr0)" in err and "look like MR" in err
    fp = (tmp_path / "out" / "fingerprint.json").read_text()
    assert "not_like_declared_modality" in fp and "mr0" in fp


def test_a_4d_image_is_not_planned_as_unnamed_channels(tmp_path: Path, capsys) -> None:
    root = tmp_path / "ds"
    for i in range(2):
        image, label = box_case(seed=i)
        vol = Volume(np.stack([image, image * 2, image * 3]).astype(np.float32), AFFINE)
        write(vol, root / "imagesTr" / f"c{i}_0000.nii.gz")  # one file holding three volumes
        write(Volume(label[None].astype(np.uint8), AFFINE, kind="label"), root / "labelsTr" / f"c{i}.nii.gz")
    dataset_json(root, {"background": 0, "organ": 1, "cyst": 2}, channels=("T1",))
    assert main(["plan", str(root), "-o", str(tmp_path / "out"), "--no-probe"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "declares 1 channel(s) (T1) but the images hold 3" in err
    assert "NAME_0000, NAME_0001" in err and not (tmp_path / "out" / "pipeline.yaml").exists()


def test_a_2d_png_dataset_is_planned_2d(tmp_path: Path, capsys) -> None:
    from PIL import Image

    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        label = np.zeros((64, 64), np.uint8)
        label[10 + i : 40, 12 : 44 - i] = 1
        image = (rng.normal(60, 10, (64, 64)) + 100 * label).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "imagesTr" / f"c{i}_0000.png")
        Image.fromarray(label).save(root / "labelsTr" / f"c{i}.png")
    dataset_json(root, {"background": 0, "cell": 1}, channels=("microscopy",), file_ending=".png")
    assert main(["plan", str(root), "-o", str(tmp_path / "out"), "--no-probe", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "the images are 2D" in out
    config = yaml.safe_load((tmp_path / "out" / "pipeline.yaml").read_text())
    assert config["network"]["options"]["spatial_dims"] == 2
    assert 1 not in config["training"]["patch_size"]  # not a 1-voxel-deep 3D patch
    assert main(["plan", str(root), "-o", str(tmp_path / "o3"), "--no-probe", "--config", "3d"]) == 1
    assert "one slice thick" in capsys.readouterr().err
