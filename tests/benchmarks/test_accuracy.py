"""The accuracy study's pieces: the real Colin27 cases, the task pipelines, and medseg on MONAI's grid."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from benchmarks.accuracy import TASKS, medseg_pipeline, phantom_case
from benchmarks.common import medseg_intensity_steps, monai_intensity_transform, write_nnunet_dataset
from benchmarks.real_cases import COLIN_LABELS, hemisphere, write_case


@pytest.fixture(scope="module")
def colin_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("colin")
    cases = {}
    for side, seed in (("left", 1000), ("right", 2000)):
        cases[side] = (root / f"{side}_0000.nii.gz", root / f"{side}.nii.gz")
        write_case(seed, side, *cases[side])
    return cases


@pytest.mark.parametrize("side", ["left", "right"])
def test_colin_case_stays_in_its_hemisphere(colin_cases: dict, side: str) -> None:
    image_path, label_path = colin_cases[side]
    image, label = nib.load(image_path), nib.load(label_path)
    assert image.shape == label.shape
    np.testing.assert_allclose(image.affine, label.affine, atol=1e-5)
    assert not np.allclose(image.affine[:3, :3], np.diag(np.diag(image.affine[:3, :3])))  # rotated
    labels = np.asarray(label.dataobj)
    assert set(np.unique(labels)) == set(COLIN_LABELS)
    world_x = nib.affines.apply_affine(label.affine, np.argwhere(labels > 0))[:, 0]
    # the mid-sagittal plane (x = 0) belongs to neither side: nothing of the other hemisphere leaks in
    if side == "left":
        assert world_x.max() < 0.0
    else:
        assert world_x.min() > 0.0
    assert np.isfinite(np.asarray(image.dataobj)).all()


def test_colin_case_geometry_agrees_between_readers(colin_cases: dict) -> None:
    """SimpleITK (LPS) and nibabel (RAS) read the same grid for the written cases."""
    image_path, _ = colin_cases["right"]
    img = sitk.ReadImage(str(image_path))
    direction = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())
    lps = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(lps @ direction, nib.load(image_path).affine[:3, :3], atol=1e-4)
    np.testing.assert_allclose(lps @ np.array(img.GetOrigin()), nib.load(image_path).affine[:3, 3], atol=1e-3)


def test_colin_case_is_deterministic(tmp_path: Path, colin_cases: dict) -> None:
    write_case(2000, "right", tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz")
    for mine, ref in (
        (tmp_path / "img.nii.gz", colin_cases["right"][0]),
        (tmp_path / "lab.nii.gz", colin_cases["right"][1]),
    ):
        np.testing.assert_array_equal(np.asarray(nib.load(mine).dataobj), np.asarray(nib.load(ref).dataobj))


def test_hemispheres_split_the_labels() -> None:
    left, right = hemisphere("left"), hemisphere("right")
    assert left[0].shape[0] + right[0].shape[0] == 181 - 1  # the midline column is in neither
    for k in (2, 3):  # cerebellum and deep grey nuclei on both sides
        assert (left[1] == k).sum() > 1000 and (right[1] == k).sum() > 1000
    with pytest.raises(ValueError, match="side"):
        hemisphere("middle")


def test_task_pipeline_uses_the_task_labels_and_intensity() -> None:
    config = medseg_pipeline(TASKS["colin27"]).to_dict()
    assert {int(k): v for k, v in config["input"]["labels"].items()} == {1: "brain", 2: "cerebellum", 3: "deep_grey"}
    names = [next(iter(step)) for step in config["preprocess"]]
    assert names == ["reorient", "resample", "zscore"]
    # only brain and cerebellum are reduced to one component: deep grey nuclei are several structures
    cleaned = [step for step in config["postprocess"] if "keep_largest_component" in step]
    assert cleaned[0]["keep_largest_component"]["labels"] == [1, 2]
    assert "lesion" in medseg_pipeline(TASKS["phantom"]).to_dict()["input"]["labels"].values()


@pytest.mark.parametrize("kind", ["ct", "zscore"])
def test_intensity_steps_match_monai(kind: str) -> None:
    from medseg.core import Volume

    rng = np.random.default_rng(0)
    x = rng.normal(40.0, 200.0, (1, 12, 10, 8)).astype(np.float32)
    vol = Volume(torch.from_numpy(x), np.eye(4))
    for step in medseg_intensity_steps(kind):
        vol = step(vol)
    theirs = monai_intensity_transform(kind)({"image": torch.from_numpy(x)})["image"]
    np.testing.assert_allclose(vol.numpy(), np.asarray(theirs), atol=1e-5)


def test_medseg_on_monai_grid_matches_monai_spacing_for_an_oblique_case(tmp_path: Path) -> None:
    """``resample_to`` MONAI's chosen grid reproduces MONAI ``Orientation`` + ``Spacing`` voxel for voxel."""
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, Spacingd

    from medseg.core import Grid, build_step
    from medseg.io import read, write

    image, _ = phantom_case(1001, scale=0.3)  # seed % 3 == 2: an oblique grid
    assert not np.allclose(image.affine[:3, :3], np.diag(np.diag(image.affine[:3, :3])))
    path = tmp_path / "oblique.nii.gz"
    write(image, path)
    theirs = Compose(
        [
            LoadImaged("image"),
            EnsureChannelFirstd("image"),
            Orientationd("image", axcodes="RAS"),
            Spacingd("image", pixdim=(2.0,) * 3, mode="bilinear"),
        ]
    )({"image": str(path)})["image"]
    grid = Grid(tuple(theirs.shape[1:]), np.asarray(theirs.affine, dtype=np.float64))  # as accuracy.agreement
    mine = build_step("reorient", axcodes="RAS")(read(path))
    mine = build_step("resample_to", reference=grid, mode="linear", fill=None)(mine)
    assert mine.spatial_shape == tuple(theirs.shape[1:])
    np.testing.assert_allclose(mine.affine, np.asarray(theirs.affine), atol=1e-4)
    diff = np.abs(mine.numpy() - np.asarray(theirs))
    assert diff.max() < 1e-5 * float(np.abs(np.asarray(theirs)).max())  # float32 rounding only


def test_nnunet_dataset_names_the_channel(tmp_path: Path) -> None:
    write_nnunet_dataset(tmp_path, [("c1", None, None)], labels=COLIN_LABELS, channel="T1")
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1"}
    assert meta["labels"] == {"background": 0, "brain": 1, "cerebellum": 2, "deep_grey": 3}


def test_a_failed_method_is_reported_and_the_others_kept() -> None:
    """A method whose training fails (e.g. diverges) is a result under the table, not the end of the run."""
    from benchmarks.accuracy_report import report

    task = TASKS["colin27"]
    metrics = {task.labels[k]: {"dice": 0.9, "hd95_mm": 2.0} for k in task.foreground} | {"mean": {"dice": 0.9}}
    cmd = "python benchmarks/accuracy.py --task colin27"
    res = {
        "machine": {"commit": "abc", "date": "today", "cpu": "cpu", "cores": 2, "torch": "t", "monai": "m"},
        "load_before": "0", "load_after": "0", "wall_s": 1.0, "n_train": 8, "n_test": 4, "budget_s": 600, "patch": 32,
        "methods": {"medseg": {"train": {"train_s": 600, "iterations": 10}, "metrics": metrics, "command": cmd}},
        "failed": {"medseg-bf16": "training diverged at epoch 6 (loss nan); lower training.lr"},
    }  # fmt: skip
    text = report(task, res, cmd)
    assert "| medseg | 0 | 600 | 10 | 0.900 |" in text  # a result from before seeds: one run, seed 0
    assert "medseg-bf16: did not complete — training diverged at epoch 6" in text


def test_seeds_are_reported_as_mean_and_standard_deviation_with_planned_iterations() -> None:
    from benchmarks.accuracy_report import report

    task = TASKS["phantom"]

    def run(seed: int, dice: float, iterations: int) -> dict:
        metrics = {task.labels[k]: {"dice": dice, "hd95_mm": 2.0} for k in task.foreground} | {"mean": {"dice": dice}}
        train = {"train_s": 600, "iterations": iterations, "planned_iterations": 1000, "plan": "3d, patch [48]"}
        return {"seed": seed, "train": train, "metrics": metrics}

    res = {
        "machine": {"commit": "abc", "date": "today", "cpu": "cpu", "cores": 2, "torch": "t", "monai": "m"},
        "load_before": "0", "load_after": "0", "wall_s": 1.0, "n_train": 8, "n_test": 4, "budget_s": 600, "patch": 32,
        "methods": {"medseg-plan": {"runs": [run(0, 0.6, 900), run(1, 0.7, 1000), run(2, 0.8, 1100)], "command": "c"}},
    }  # fmt: skip
    text = report(task, res, "c")
    row = next(line for line in text.splitlines() if line.startswith("| medseg-plan |"))
    assert row.startswith("| medseg-plan | 0,1,2 | 600 ± 0 | 1000 ± 100 (planned 1000 ± 0; delivered 1.00 ± 0.10×) |")
    assert row.endswith("| 0.700 ± 0.100 |")
    assert text.count("medseg-plan chose: 3d, patch [48].") == 1
