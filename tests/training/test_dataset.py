from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.core import make_affine
from medseg.data import ct_phantom
from medseg.data.dicom_series import write_series
from medseg.errors import GeometryError, InputError
from medseg.io import write
from medseg.training import load_dataset, prepare_dataset
from medseg.training.cache import CacheStats


def test_nnunet_layout(nnunet_dataset: Path) -> None:
    ds = load_dataset(nnunet_dataset)
    assert [c.case_id for c in ds.cases] == ["case00", "case01", "case02", "case03"]
    assert ds.labels == {0: "background", 1: "liver", 2: "spleen"}
    assert ds.channels == ["CT"]
    assert ds.cases[0].label == nnunet_dataset / "labelsTr" / "case00.nii.gz"


def test_nnunet_missing_label_and_channel(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    image, _ = ct_phantom((8, 8, 4), (1, 1, 1))
    write(image, root / "imagesTr" / "a_0000.nii.gz")
    with pytest.raises(InputError, match="no label for case 'a'"):
        load_dataset(root)
    write(image, root / "imagesTr" / "b_0000.nii.gz")
    write(image, root / "imagesTr" / "b_0001.nii.gz")
    with pytest.raises(InputError, match="case 'a' has channels \\[0\\], expected 0..1"):
        load_dataset(root)


def test_csv_manifest_two_channels_and_class(tmp_path: Path) -> None:
    image, label = ct_phantom((12, 10, 6), (1.5, 1.5, 2.0))
    for name in ("t1", "t2"):
        write(image, tmp_path / f"{name}.nii.gz")
    write(label, tmp_path / "seg.nii.gz")
    (tmp_path / "m.csv").write_text("case_id,image,image2,label,class\nc1,t1.nii.gz,t2.nii.gz,seg.nii.gz,3\n")
    ds = load_dataset(tmp_path / "m.csv")
    (case,) = ds.cases
    assert case.images == [tmp_path / "t1.nii.gz", tmp_path / "t2.nii.gz"] and case.class_label == 3
    assert ds.channels == ["image", "image2"]
    cached = prepare_dataset(ds, None, tmp_path / "cache")
    assert cached[0].image().shape == (2, 12, 10, 6) and cached[0].class_label == 3
    (tmp_path / "bad.csv").write_text("image,label\nmissing.nii.gz,seg.nii.gz\n")
    with pytest.raises(InputError, match=r"bad.csv:2: image file .*missing.nii.gz does not exist"):
        load_dataset(tmp_path / "bad.csv")


def test_dicom_folder_with_label_files(tmp_path: Path) -> None:
    root = tmp_path / "dicom"
    for i in range(2):
        image, label = ct_phantom((16, 14, 6), (1.2, 1.2, 3.0), seed=i)
        write_series(image, root / f"pat{i}")
        write(label, root / f"pat{i}" / "label.nii.gz")
    ds = load_dataset(root)
    assert [c.case_id for c in ds.cases] == ["pat0", "pat1"]
    cached = prepare_dataset(ds, None, tmp_path / "cache")
    lab = cached[0].label()
    assert lab.shape == (1, 16, 14, 6) and set(np.unique(lab)) >= {0, 1}


def test_grid_mismatch_reported_per_case(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(3):
        image, label = ct_phantom((10, 10, 6), (1, 1, 1), seed=i)
        write(image, root / "imagesTr" / f"c{i}_0000.nii.gz")
        if i != 1:  # c0 and c2 are shifted by 5 mm
            label = label.replace(affine=make_affine((1, 1, 1), np.array(label.origin) + 5))
        write(label, root / "labelsTr" / f"c{i}.nii.gz")
    with pytest.raises(GeometryError) as exc:
        prepare_dataset(load_dataset(root), None, tmp_path / "cache")
    msg = str(exc.value)
    assert "2 of 3 cases" in msg and "case 'c0'" in msg and "case 'c2'" in msg and "case 'c1'" not in msg


def test_cache_hit_skips_preprocessing(nnunet_dataset: Path, tmp_path: Path) -> None:
    calls: list[str] = []

    def crop(volume):  # a spatial preprocess: crop 4 voxels off X at the start
        calls.append(str(volume.meta.get("source")))
        a = volume.affine.copy()
        a[:3, 3] += a[:3, 0] * 4
        return volume.replace(array=volume.numpy()[:, 4:], affine=a)

    ds = load_dataset(nnunet_dataset)
    stats = CacheStats()
    first = prepare_dataset(ds, crop, tmp_path / "cache", preprocess_key="crop4", stats=stats)
    assert (stats.hits, stats.misses, len(calls)) == (0, 4, 4)
    # the label is put on the pre-processed (cropped) grid
    import nibabel as nib

    raw = np.asarray(nib.load(ds.cases[0].label).dataobj)
    assert np.array_equal(first[0].label()[0], raw[4:])
    stats2 = CacheStats()
    again = prepare_dataset(ds, crop, tmp_path / "cache", preprocess_key="crop4", stats=stats2)
    assert (stats2.hits, stats2.misses, len(calls)) == (4, 0, 4)
    assert [c.folder for c in again] == [c.folder for c in first]
    stats3 = CacheStats()
    prepare_dataset(ds, crop, tmp_path / "cache", preprocess_key="crop4-v2", stats=stats3)
    assert stats3.misses == 4
    assert json.loads((first[0].folder / "meta.json").read_text())["shape"] == [28, 32, 32]


def test_channel_files_follow_one_rule_for_predict_and_training(tmp_path) -> None:
    """A gap in the channel numbers is the same error whether the folder is predicted or trained on."""
    import pytest as _pytest

    from medseg.batch import discover_cases
    from medseg.errors import InputError
    from medseg.training import load_dataset

    root = tmp_path / "Dataset001_X"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for name in ("A_0000", "A_0002"):
        (root / "imagesTr" / f"{name}.nii.gz").write_bytes(b"x")
    (root / "labelsTr" / "A.nii.gz").write_bytes(b"x")
    for reader, path in ((load_dataset, root), (discover_cases, root / "imagesTr")):
        with _pytest.raises(InputError, match="case 'A' has channels 0000, 0002 but lacks A_0001"):
            reader(path)
