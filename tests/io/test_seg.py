"""DICOM SEG reading: own geometry and reference grids, frame order, overlaps, names, other writers, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.pixels import pack_bits

import medseg
from medseg.core import Volume
from medseg.errors import DicomError, GeometryError, InputWarning
from medseg.export import EXPORTERS

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
ITK2SEG = shutil.which("itkimage2segimage") or (
    str(Path(sys.executable).parent / "itkimage2segimage")
    if (Path(sys.executable).parent / "itkimage2segimage").exists()
    else None
)
LABELS = {1: "liver", 2: "spleen", 3: "kidney_left", 4: "lesion"}


@pytest.fixture
def case(dicom_series):
    """A CT series on disk (read back) and a phantom label map on its grid."""
    from medseg.data import ct_phantom

    folder = dicom_series("ct", shape=(40, 34, 12), spacing=(1.2, 1.1, 3.0))
    ref = medseg.read(folder)
    _, label = ct_phantom((40, 34, 12), (1.2, 1.1, 3.0))
    return folder, ref, Volume(label.numpy(), ref.affine, kind="label")


def _write_seg(case, tmp_path, **options) -> Path:
    _, ref, mask = case
    (path,) = EXPORTERS.build("dicom_seg", **options)(mask, tmp_path / "seg", "c", image=ref, labels=LABELS)
    return path


def test_sample_liver_seg_on_its_own_frames(sample):
    """pydicom-data's real liver SEG: 3 frames of 512² placed at their positions; counts match highdicom."""
    path = sample / "dicom_seg" / "liver_seg.dcm"
    vol = medseg.read(path)
    assert vol.kind == "label" and vol.spatial_shape == (512, 512, 3)
    assert vol.meta["labels"] == {1: "Liver"} and vol.meta["segments"][0]["type"]["CodeMeaning"] == "Liver"
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array
    inv = np.linalg.inv(np.diag([-1.0, -1.0, 1.0, 1.0]) @ vol.affine)
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        pos = np.array(item.PlanePositionSequence[0].ImagePositionPatient, float)
        k = round(float(inv[2, :3] @ pos + inv[2, 3]))
        np.testing.assert_array_equal(vol.numpy()[0, :, :, k], frames[i].T)
    hd_volume = hd.seg.segread(path).get_volume()
    assert int(vol.numpy().sum()) == int(hd_volume.array.sum()) == 107_098


@pytest.mark.parametrize("name", ["liver_1frame.dcm", "liver_expb_1frame.dcm"])
def test_pydicom_one_frame_segs(name):
    """pydicom's cut-down liver SEG keeps 3 frame descriptions for 1 frame of pixels: reported, first used."""
    with pytest.warns(InputWarning, match=rf"{name}: 3 per-frame descriptions but 1 frame\(s\) of pixels"):
        vol = medseg.read(TEST_FILES / name)
    expected = int(pydicom.dcmread(TEST_FILES / name).pixel_array.sum())
    assert vol.spatial_shape[2] == 1 and int(vol.numpy().sum()) == expected > 30_000


def test_medseg_seg_on_reference_and_on_its_own_grid(case, tmp_path):
    folder, ref, mask = case
    path = _write_seg(case, tmp_path)
    on_ref = medseg.read(path, reference=folder)
    assert on_ref.grid.matches(ref.grid)
    np.testing.assert_array_equal(on_ref.numpy(), mask.numpy())
    assert on_ref.meta["labels"] == LABELS
    own = medseg.read(path)  # frames span the slices holding labels; same voxels in world space
    offset = np.linalg.inv(ref.affine) @ own.affine
    np.testing.assert_allclose(offset[:3, :3], np.eye(3), atol=1e-6)
    o = np.round(offset[:3, 3]).astype(int)
    x, y, z = own.spatial_shape
    np.testing.assert_array_equal(own.numpy()[0], mask.numpy()[0, o[0] : o[0] + x, o[1] : o[1] + y, o[2] : o[2] + z])
    assert (own.numpy() > 0).sum() == (mask.numpy() > 0).sum()


def test_frames_in_any_order(case, tmp_path):
    folder, _, mask = case
    path = _write_seg(case, tmp_path)
    ds = pydicom.dcmread(path)
    order = np.random.default_rng(0).permutation(int(ds.NumberOfFrames))
    frames = ds.pixel_array[order]
    ds.PerFrameFunctionalGroupsSequence = [ds.PerFrameFunctionalGroupsSequence[int(i)] for i in order]
    ds.PixelData = pack_bits(frames)
    shuffled = tmp_path / "shuffled.dcm"
    ds.save_as(shuffled)
    np.testing.assert_array_equal(medseg.read(shuffled, reference=folder).numpy(), mask.numpy())


def test_fractional_overlaps_are_reported_and_kept_as_channels(case, tmp_path):
    folder, ref, mask = case
    m = mask.numpy()[0]
    p1 = np.where(m == 1, 0.9, 0.0)
    p2 = np.where(m == 1, 0.6, 0.0)  # segment 2 covers the whole liver as well
    probs = np.stack([np.zeros_like(p1), p1, p2]).astype(np.float32)
    vol = Volume(probs, ref.affine, kind="probability")
    (path,) = EXPORTERS.build("dicom_seg", segmentation_type="fractional")(vol, tmp_path, "f", image=ref)
    n = int((m == 1).sum())
    with pytest.warns(InputWarning, match=rf"f\.seg\.dcm: segments overlap: 'label_1'/'label_2' \({n} voxels\)"):
        labels = medseg.read(path, reference=folder)
    assert labels.meta["overlap_voxels"] == n
    np.testing.assert_array_equal(labels.numpy()[0], np.where(m == 1, 2, 0))  # the higher label value wins
    chans = medseg.read(path, reference=folder, as_channels=True)
    assert chans.kind == "probability" and chans.numpy().shape == (2, *m.shape)
    np.testing.assert_allclose(chans.numpy(), probs[1:], atol=0.5 / 255 + 1e-6)


def test_segment_names_map_to_labels(case, tmp_path):
    folder, _, mask = case
    path = _write_seg(case, tmp_path)
    vol = medseg.read(path, reference=folder, labels={7: ["hepar", "Liver", "liver"], 9: ["tumour", "lesion*"]})
    m = mask.numpy()[0]
    np.testing.assert_array_equal(vol.numpy()[0], np.select([m == 1, m == 4], [7, 9], 0))
    assert vol.meta["labels"] == {7: "hepar", 9: "tumour"}
    assert vol.meta["unmapped"] == ["spleen", "kidney_left"]


@pytest.mark.skipif(ITK2SEG is None, reason="dcmqi not installed (pip install dcmqi)")
def test_dcmqi_written_seg_is_read_voxel_exactly(case, tmp_path):
    folder, ref, mask = case
    m = mask.numpy()[0]
    m = np.where(m == 3, 0, m)  # dcmqi writes the labels its metadata describes: leave out 3
    medseg.write(mask.replace(array=m[None]), tmp_path / "label.nii.gz")
    attrs = []
    for value, (name, code) in {1: ("Liver", "10200004"), 2: ("Spleen", "78961009"), 4: ("Lesion", "52988006")}.items():
        attrs.append(
            {
                "labelID": value,
                "SegmentDescription": name,
                "SegmentAlgorithmType": "MANUAL",
                "SegmentedPropertyCategoryCodeSequence": {
                    "CodeValue": "123037004",
                    "CodingSchemeDesignator": "SCT",
                    "CodeMeaning": "Anatomical Structure",
                },
                "SegmentedPropertyTypeCodeSequence": {
                    "CodeValue": code,
                    "CodingSchemeDesignator": "SCT",
                    "CodeMeaning": name,
                },
                "recommendedDisplayRGBValue": [200, 100, 50],
            }
        )
    meta = {
        "ContentCreatorName": "test",
        "ClinicalTrialSeriesID": "1",
        "ClinicalTrialTimePointID": "1",
        "SeriesDescription": "dcmqi",
        "SeriesNumber": "301",
        "InstanceNumber": "1",
        "segmentAttributes": [attrs],
        "ContentLabel": "SEGMENTATION",
        "ContentDescription": "test",
        "ClinicalTrialCoordinatingCenterName": "test",
    }
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    run = subprocess.run(
        [
            ITK2SEG,
            "--inputImageList",
            str(tmp_path / "label.nii.gz"),
            "--inputDICOMDirectory",
            str(folder),
            "--outputDICOM",
            str(tmp_path / "dcmqi.dcm"),
            "--inputMetadata",
            str(tmp_path / "meta.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    vol = medseg.read(
        tmp_path / "dcmqi.dcm", reference=folder, labels={1: ["liver", "Liver"], 2: ["Spleen"], 4: ["Lesion"]}
    )
    np.testing.assert_array_equal(vol.numpy()[0], m)
    plain = medseg.read(tmp_path / "dcmqi.dcm", reference=ref)  # segment numbers 1..3 as values
    np.testing.assert_array_equal(plain.numpy()[0], np.select([m == 1, m == 2, m == 4], [1, 2, 3], 0))


def test_bad_segs_are_one_clear_line(case, dicom_series, tmp_path):
    _, ref, _ = case
    path = _write_seg(case, tmp_path)
    ds = pydicom.dcmread(path)
    ds.SegmentSequence = []
    empty = tmp_path / "empty.dcm"
    ds.save_as(empty)
    with pytest.raises(DicomError, match=r"empty\.dcm: the DICOM SEG has no segments") as info:
        medseg.read(empty)
    assert "\n" not in str(info.value)
    other = dicom_series("other", shape=(40, 34, 12), spacing=(1.2, 1.1, 3.0))  # same grid, other instances
    with pytest.raises(DicomError, match=r"c\.seg\.dcm: the SEG references \d+ image instance\(s\) that are not in"):
        medseg.read(path, reference=other)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nifti = ref.replace(meta={"source": "ct.nii.gz"})  # no UIDs to check: geometry decides
        assert medseg.read(path, reference=nifti).numpy().any()
    shifted = ref.replace(affine=ref.affine + np.pad(np.array([[0, 0, 0, 4.0]]), ((0, 3), (0, 0))), meta={})
    with pytest.raises(GeometryError, match=r"c\.seg\.dcm: frame \d+ at .* is not a slice of the reference"):
        medseg.read(path, reference=shifted)
