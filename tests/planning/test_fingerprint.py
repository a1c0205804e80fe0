"""The fingerprint of small synthetic datasets with known statistics; its content-hash cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.core import make_affine
from medseg.errors import InputWarning
from medseg.planning.fingerprint import fingerprint_dataset, load_fingerprint

from .conftest import box_case, dataset_json, write_case

SPACING = (1.0, 1.0, 3.0)
LABELS = {"background": 0, "organ": 1, "cyst": 2}


@pytest.fixture
def known(tmp_path: Path) -> Path:
    """Case a (RAS): foreground 100; case b (LPS, label 2 missing): foreground 200; case c: axes permuted (S, R, A)."""
    root = tmp_path / "ds"
    image, label = box_case(fg_value=100.0)
    write_case(root, "a", image, label, make_affine(SPACING))
    image, label = box_case(fg_value=200.0)
    label[label == 2] = 0
    image[10:13, 3:6, 3:6] = 10.0
    write_case(root, "b", image, label, make_affine(SPACING, direction=np.diag([-1.0, -1.0, 1.0])))
    image, label = box_case(fg_value=100.0)
    # array axes (S, R, A): transpose (X, Y, Z) → (Z, X, Y); spacing 3, 1, 1 along the array axes
    direction = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    write_case(
        root, "c", image.transpose(2, 0, 1), label.transpose(2, 0, 1), make_affine((3.0, 1.0, 1.0), direction=direction)
    )
    dataset_json(root, LABELS, numTraining=3)
    return root


def test_geometry_in_ras_order_crop_and_orientation_flags(known: Path) -> None:
    fp = fingerprint_dataset(known)
    by_id = {c["case_id"]: c for c in fp.cases}
    for case in by_id.values():
        assert case["shape"] == [20, 16, 10] and case["spacing"] == pytest.approx(list(SPACING))
        # the nonzero body is 16 × 12 × 8 of 20 × 16 × 10 voxels
        assert case["shape_after_crop"] == [16, 12, 8]
        assert case["crop_fraction"] == pytest.approx(16 * 12 * 8 / (20 * 16 * 10))
    assert by_id["b"]["orientation"] == "LPS" and by_id["c"]["orientation"] == "SRA"
    assert set(fp.flags["mixed_orientations"]) == {"RAS", "LPS", "SRA"}
    assert fp.median_crop_fraction == pytest.approx(0.48)


def test_label_statistics(known: Path) -> None:
    fp = fingerprint_dataset(known)
    a = next(c for c in fp.cases if c["case_id"] == "a")
    organ, cyst = a["labels"]["1"], a["labels"]["2"]
    voxel_mm3 = 3.0
    assert organ["voxels"] == 36 and organ["components"] == 2
    assert organ["volume_ml"] == pytest.approx(36 * voxel_mm3 / 1000)
    assert organ["smallest_component_mm3"] == pytest.approx(4 * voxel_mm3)
    assert organ["largest_component_mm3"] == pytest.approx(32 * voxel_mm3)
    assert organ["fraction"] == pytest.approx(36 / (20 * 16 * 10))
    assert cyst["voxels"] == 26 and cyst["components"] == 1 and cyst["hole_voxels"] == 1
    s = fp.label_stats(2)
    assert s["cases_present"] == 2 and s["cases_missing"] == ["b"] and s["single_component"] is True
    assert fp.flags["labels_missing"] == {"2": ["b"]}
    assert fp.label_stats(1)["components_max"] == 2 and fp.label_stats(1)["single_component"] is False
    assert fp.label_stats(1)["smallest_component_mm3"] == pytest.approx(12.0)


def test_foreground_intensity_statistics_weight_every_case_equally(known: Path) -> None:
    # foreground of a and c is 100 (62 voxels each), of b 200 (36 voxels): an equal-weight mixture of
    # the three cases, as nnU-Net's equal-size samples per case make it
    fp = fingerprint_dataset(known)
    s = fp.intensity(0)
    assert s["mean"] == pytest.approx((100 + 200 + 100) / 3)
    assert s["std"] == pytest.approx(np.std([100, 200, 100]))
    assert (s["min"], s["max"], s["median"]) == (100.0, 200.0, 100.0)
    assert s["percentile_00_5"] == pytest.approx(100.0) and s["percentile_99_5"] == pytest.approx(200.0)


def test_intensity_matches_nnunet_sampling(tmp_path: Path) -> None:
    """Against nnU-Net's procedure: 10,000 samples per case with replacement, pooled."""
    rng = np.random.default_rng(3)
    root = tmp_path / "ds"
    values = []
    for i, (n, mu, sd) in enumerate([(400, 50.0, 10.0), (1500, 300.0, 40.0), (900, -20.0, 5.0)]):
        image = np.zeros((24, 24, 24), np.float32)
        label = np.zeros((24, 24, 24), np.uint8)
        flat = np.flatnonzero(np.ones(label.size))[:n]
        label.flat[flat] = 1
        v = rng.normal(mu, sd, n).astype(np.float32)
        image.flat[flat] = v
        values.append(v)
        write_case(root, f"c{i}", image, label, make_affine((1.0, 1.0, 1.0)))
    dataset_json(root, {"background": 0, "fg": 1}, channels=("MR",))
    s = fingerprint_dataset(root).intensity(0)
    sampler = np.random.RandomState(1234)
    pool = np.concatenate([sampler.choice(v, 200_000, replace=True) for v in values]).astype(np.float64)
    assert s["mean"] == pytest.approx(pool.mean(), abs=0.5)
    assert s["std"] == pytest.approx(pool.std(), rel=0.01)
    for key, q in (("percentile_00_5", 0.5), ("median", 50.0), ("percentile_99_5", 99.5)):
        assert s[key] == pytest.approx(np.percentile(pool, q), abs=2.0), key


def test_spacing_outliers_and_never_present_labels(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for i, spacing in enumerate([(1.0, 1.0, 3.0), (1.0, 1.0, 3.0), (1.0, 1.0, 8.0)]):
        image, label = box_case()
        label[label == 2] = 0
        write_case(root, f"c{i}", image, label, make_affine(spacing))
    dataset_json(root, LABELS)
    with pytest.warns(InputWarning, match=r"labels \[2\] are declared but no training case contains them"):
        fp = fingerprint_dataset(root)
    assert fp.flags["spacing_outliers"] == {"c2": [1.0, 1.0, 8.0]}
    assert fp.flags["labels_never_present"] == [2]


def test_cache_reuses_unchanged_cases_by_content(known: Path, tmp_path: Path) -> None:
    cache = tmp_path / "out" / "fingerprint.json"
    first = fingerprint_dataset(known, cache=cache)
    assert first.data["cache"]["analysed"] == 3
    again = fingerprint_dataset(known, cache=cache)
    assert (again.data["cache"]["reused"], again.data["cache"]["analysed"]) == (3, 0)
    assert again.intensity(0) == first.intensity(0)
    # a changed file (same name, new content) is read again; the others come from the cache
    image, label = box_case(fg_value=400.0)
    write_case(known, "a", image, label, make_affine(SPACING))
    third = fingerprint_dataset(known, cache=cache)
    assert (third.data["cache"]["reused"], third.data["cache"]["analysed"]) == (2, 1)
    assert third.intensity(0)["max"] == 400.0
    assert load_fingerprint(cache).data["cases"] == third.data["cases"]
    json.loads(cache.read_text())  # valid JSON on disk


def test_folder_of_dicom_cases_and_csv_manifest(tmp_path: Path) -> None:
    """Whatever ``medseg train --data`` accepts: DICOM case folders (CT from the Modality tag) and a CSV."""
    from medseg.data import ct_phantom
    from medseg.data.dicom_series import write_series
    from medseg.io import read, write
    from medseg.planning.planner import plan

    root = tmp_path / "dicom"
    rows = ["image,label"]
    for i in range(2):
        image, label = ct_phantom((24, 20, 8), (1.2, 1.2, 3.0), seed=i)
        write_series(image, root / f"case{i}")
        on_grid = read(root / f"case{i}")  # the label must lie on the series' grid as read
        write(label.replace(affine=on_grid.affine), root / f"case{i}" / "label.nii.gz")
        write(image, tmp_path / "nifti" / f"img{i}.nii.gz")
        write(label, tmp_path / "nifti" / f"lab{i}.nii.gz")
        rows.append(f"nifti/img{i}.nii.gz,nifti/lab{i}.nii.gz")
    fp = fingerprint_dataset(root)
    assert fp.n_cases == 2 and fp.modalities == ["CT"] and fp.channels == ["channel0"]
    assert fp.cases[0]["spacing"] == pytest.approx([1.2, 1.2, 3.0], abs=1e-4)
    p = plan(fp)
    assert any("percentile_clip" in s for s in p.pipeline["preprocess"])  # CT from DICOM Modality
    manifest = tmp_path / "cases.csv"
    manifest.write_text("\n".join(rows) + "\n")
    fc = fingerprint_dataset(manifest)
    assert fc.n_cases == 2 and fc.channels == ["image"]
    assert fc.cases[0]["labels"].keys() == fp.cases[0]["labels"].keys()
    assert {"zscore": {"over": "image"}} in plan(fc).pipeline["preprocess"]  # no modality known: z-score


def test_cache_key_covers_the_roi_mapping_and_the_reader_options(tmp_path: Path) -> None:
    """The same RTSTRUCT export with the ROI→label mapping swapped: per-label statistics swap, not reused."""
    import warnings

    from medseg.training import load_dataset
    from tests.training.test_clinical import _patient

    root = tmp_path / "export"
    for i in range(2):
        _patient(root, i, f"PAT{i}/CT", f"PAT{i}/RS", {1: "Liver", 2: "Spleen"})
    cache = tmp_path / "out" / "fingerprint.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        first = fingerprint_dataset(
            load_dataset(root, labels={1: ["liver", "Liver"], 2: ["spleen", "Spleen"]}), cache=cache
        )
        swapped = fingerprint_dataset(
            load_dataset(root, labels={1: ["spleen", "Spleen"], 2: ["liver", "Liver"]}), cache=cache
        )
    assert swapped.data["cache"]["analysed"] == 2
    for value, other in ((1, 2), (2, 1)):
        mine, theirs = swapped.label_stats(value), first.label_stats(other)
        assert mine["name"] == theirs["name"] and mine["median_volume_ml"] == theirs["median_volume_ml"]
    assert first.label_stats(1)["median_volume_ml"] != first.label_stats(2)["median_volume_ml"]
    again = fingerprint_dataset(
        swapped_ds := load_dataset(root, labels={1: ["spleen", "Spleen"], 2: ["liver", "Liver"]}), cache=cache
    )
    assert again.data["cache"]["reused"] == 2
    tolerant = fingerprint_dataset(swapped_ds, cache=cache, spacing_tolerance=0.2)  # another reader option
    assert tolerant.data["cache"]["analysed"] == 2
