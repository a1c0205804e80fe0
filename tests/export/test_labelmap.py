"""NIfTI/NRRD label maps and 3D Slicer .seg.nrrd: exact grid, dtype, names, Slicer header keys."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medseg.core import Volume
from medseg.export import EXPORTERS
from medseg.export.labels import label_color
from medseg.io import read
from tests.conftest import AFFINES


def test_nifti_keeps_exact_affine_and_uint8(make_volume, tmp_path):
    label = make_volume(shape=(1, 20, 18, 12), affine="oblique", kind="label", n_labels=4)
    nii, sidecar = EXPORTERS.build("nifti")(label, tmp_path, "c", labels={1: "liver"})
    img = nib.load(nii)
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(img.affine, label.affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(img.dataobj), label.numpy()[0])
    assert img.header.get_intent()[0] == "label"
    assert json.loads(sidecar.read_text()) == {"1": "liver", "2": "label_2", "3": "label_3"}


def test_nifti_uses_uint16_above_255(tmp_path):
    arr = np.zeros((1, 8, 8, 4), np.int32)
    arr[0, 2:4, 2:4, 1] = 300
    arr[0, 5, 5, 2] = 7
    vol = Volume(arr, AFFINES["lps"], kind="label")
    nii, _ = EXPORTERS.build("nifti")(vol, tmp_path, "big")
    img = nib.load(nii)
    assert img.get_data_dtype() == np.uint16
    np.testing.assert_array_equal(np.asarray(img.dataobj), arr[0])


def test_nrrd_round_trip_grid(make_volume, tmp_path):
    label = make_volume(shape=(1, 20, 18, 12), affine="lps", kind="label")
    nrrd, _ = EXPORTERS.build("nrrd")(label, tmp_path, "c")
    back = read(nrrd)
    assert back.grid.matches(label.grid, atol=1e-5)
    np.testing.assert_array_equal(back.numpy(), label.numpy())


def test_seg_nrrd_header_keys_and_voxels(phantom, tmp_path):
    _, label = phantom
    names = {1: "liver", 2: "spleen", 3: "kidney_left", 4: "lesion"}
    (path,) = EXPORTERS.build("seg_nrrd")(label, tmp_path, "c", labels=names)
    assert path.name == "c.seg.nrrd"
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    image = reader.Execute()
    meta = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}
    assert meta["Segmentation_MasterRepresentation"] == "Binary labelmap"
    lab = label.numpy()[0]
    for i, (value, name) in enumerate(names.items()):
        key = f"Segment{i}_"
        assert meta[key + "Name"] == name
        assert meta[key + "LabelValue"] == str(value)
        assert meta[key + "Layer"] == "0"
        assert meta[key + "ID"] == f"Segment_{value}"
        assert "Segmentation.Status" in meta[key + "Tags"]
        rgb = [float(c) for c in meta[key + "Color"].split()]
        np.testing.assert_allclose(rgb, np.array(label_color(value)) / 255, atol=1e-5)
        idx = np.argwhere(lab == value)
        expected = " ".join(f"{lo} {hi}" for lo, hi in zip(idx.min(axis=0), idx.max(axis=0)))
        assert meta[key + "Extent"] == expected
    back = read(path)
    assert back.grid.matches(label.grid, atol=1e-5)
    np.testing.assert_array_equal(back.numpy()[0], lab)
    assert sitk.GetArrayFromImage(image).dtype == np.uint8


def test_seg_nrrd_header_is_plain_nrrd_text(phantom, tmp_path):
    """Slicer reads the header lines `SegmentN_Key:=value` before the data."""
    _, label = phantom
    (path,) = EXPORTERS.build("seg_nrrd")(label, tmp_path, "c", labels={1: "liver"})
    head = path.read_bytes().split(b"\n\n", 1)[0].decode("ascii")
    assert head.startswith("NRRD")
    assert "space: left-posterior-superior" in head
    assert "Segment0_Name:=liver" in head
    assert "Segment0_LabelValue:=1" in head
