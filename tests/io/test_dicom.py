"""DICOM series: geometry against SimpleITK, shuffled order, multi-series, bad series."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import medseg
from medseg.errors import DicomError, InputWarning
from medseg.io import find_series, read_dicom
from medseg.io.itk import affine_from_sitk
from tests.conftest import AFFINES


def _sitk_series(folder):
    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(folder)))
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    return r.Execute()


def test_real_mr_series_matches_sitk(sample):
    folder = sample / "mr_dicom"
    v = medseg.read(folder)
    s = _sitk_series(folder)
    assert v.spatial_shape == s.GetSize() == (256, 256, 20)
    assert np.abs(v.affine - affine_from_sitk(s)).max() < 1e-3
    assert np.array_equal(v.numpy()[0], sitk.GetArrayFromImage(s).transpose(2, 1, 0))
    # spacing from positions (~7 mm), not SpacingBetweenSlices (2.0)
    assert v.spacing[2] == pytest.approx(7.0, abs=0.01)
    assert v.meta["modality"] == "MR" and len(v.meta["sop_instance_uids"]) == 20


def test_shuffled_files_give_the_same_volume(sample, tmp_path):
    files = sorted((sample / "mr_dicom").glob("*.dcm"))
    rng = np.random.default_rng(3)
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for i, f in enumerate(rng.permutation(files)):
        shutil.copy(f, shuffled / f"x{i:03d}.dcm")
    a, b = medseg.read(sample / "mr_dicom"), medseg.read(shuffled)
    assert np.array_equal(a.numpy(), b.numpy()) and np.array_equal(a.affine, b.affine)
    c = medseg.read(list(rng.permutation(files)))
    assert np.array_equal(a.numpy(), c.numpy())


@pytest.mark.parametrize("affine", ["lps", "oblique", "anisotropic"])
def test_synthetic_series_geometry_exact(dicom_series, affine):
    from medseg.data import ct_phantom

    folder = dicom_series(affine=AFFINES[affine], rescale_intercept=-1024)
    img, _ = ct_phantom((24, 20, 10), affine=AFFINES[affine])
    v = medseg.read(folder)
    assert np.allclose(v.affine, img.affine, atol=1e-4)
    assert np.array_equal(v.numpy(), img.numpy())
    assert np.abs(v.affine - affine_from_sitk(_sitk_series(folder))).max() < 1e-3


def test_two_series_detected_and_chosen(dicom_series, tmp_path):
    a = dicom_series("mixed/a", seed=1)
    dicom_series("mixed/b", shape=(16, 16, 6), seed=2)
    found = find_series(tmp_path / "mixed")
    assert len(found) == 2 and {s.n_slices for s in found} == {10, 6}
    with pytest.raises(DicomError, match="2 image series") as err:
        medseg.read(tmp_path / "mixed")
    assert "--series" in str(err.value) and str(tmp_path / "mixed") in str(err.value)
    uid = pydicom.dcmread(next(a.iterdir())).SeriesInstanceUID
    assert medseg.read(tmp_path / "mixed", series_uid=uid).spatial_shape == (24, 20, 10)
    with pytest.raises(DicomError, match="no series with UID"):
        medseg.read(tmp_path / "mixed", series_uid="1.2.3")


def test_missing_slice_reports_gap(dicom_series):
    folder = dicom_series()
    (folder / "slice_0004.dcm").unlink()
    with pytest.raises(DicomError, match="uneven slice spacing: 6.000 mm") as err:
        medseg.read(folder)
    assert "slice_0003.dcm" in str(err.value)


def test_duplicate_slices(dicom_series):
    folder = dicom_series()
    ds = pydicom.dcmread(folder / "slice_0003.dcm")
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "copy.dcm")
    with pytest.raises(DicomError, match="share a position"):
        medseg.read(folder)


def test_mixed_orientations(dicom_series):
    folder = dicom_series()
    ds = pydicom.dcmread(folder / "slice_0002.dcm")
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.save_as(folder / "slice_0002.dcm")
    with pytest.raises(DicomError, match="mixed orientations"):
        medseg.read(folder)


def test_mixed_sizes(dicom_series):
    folder = dicom_series()
    ds = pydicom.dcmread(folder / "slice_0002.dcm")
    ds.Rows = 10
    ds.PixelData = ds.PixelData[: 10 * 24 * 2]
    ds.save_as(folder / "slice_0002.dcm")
    with pytest.raises(DicomError, match="different sizes"):
        medseg.read(folder)


def test_missing_position(dicom_series):
    folder = dicom_series()
    ds = pydicom.dcmread(folder / "slice_0001.dcm")
    del ds.ImagePositionPatient
    ds.save_as(folder / "slice_0001.dcm")
    with pytest.raises(DicomError, match="slice_0001.dcm: missing ImagePositionPatient"):
        medseg.read(folder)


def test_missing_pixel_data(dicom_series):
    folder = dicom_series()
    ds = pydicom.dcmread(folder / "slice_0001.dcm")
    del ds.PixelData
    ds.save_as(folder / "slice_0001.dcm")
    with pytest.raises(DicomError, match="slice_0001.dcm: has no pixel data"):
        medseg.read(folder)


def test_unsupported_transfer_syntax_names_codec(dicom_series):
    folder = dicom_series()
    ds = pydicom.dcmread(folder / "slice_0001.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no pydicom decoder
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
    ds.save_as(folder / "slice_0001.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="slice_0001.dcm: cannot decode pixel data.*medseg\\[dicom-codecs\\]"):
        medseg.read(folder)


def test_rescale_slope_gives_float(dicom_series):
    folder = dicom_series()
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.RescaleSlope = 0.5
        ds.save_as(f)
    v = medseg.read(folder)
    raw = pydicom.dcmread(folder / "slice_0000.dcm").pixel_array
    assert v.numpy().dtype == np.float32
    assert np.allclose(v.numpy()[0, :, :, 0], raw.T * 0.5)


def test_rtstruct_is_not_an_image(tmp_path):
    from pydicom.dataset import FileDataset, FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = FileDataset(str(tmp_path / "rs.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.Modality = "RTSTRUCT"
    ds.save_as(tmp_path / "rs.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="RT Structure Set"):
        medseg.read(tmp_path)
    with pytest.raises(DicomError, match="RT Structure Set"):
        medseg.read(tmp_path / "rs.dcm")


def test_real_seg_is_not_an_image(sample):
    """The image reader refuses a SEG (medseg.read reads it as labels: tests/io/test_seg.py)."""
    seg = sample / "dicom_seg" / "liver_seg.dcm"
    if not seg.exists():
        pytest.skip("sample SEG not shipped")
    with pytest.raises(DicomError, match="Segmentation"):
        read_dicom(seg)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DicomError, match="no DICOM files found"):
        medseg.read(tmp_path)


TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"  # local: get_testdata_file may download


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ],
)
def test_pydicom_test_files_decode(name):
    ref = pydicom.dcmread(TEST_FILES / "MR_small.dcm").pixel_array if name.startswith("MR") else None
    v = read_dicom(TEST_FILES / name)
    assert v.n_channels == 1 and v.spatial_shape[2] == 1
    if ref is not None:  # every encoding of MR_small decodes to the same pixels
        assert np.array_equal(v.numpy()[0, :, :, 0], ref.T)


def test_lone_file_without_position_gets_identity_with_warning():
    with pytest.warns(InputWarning, match="identity orientation"):
        v = read_dicom(TEST_FILES / "JPEG2000.dcm")
    assert v.orientation == "LPS" and v.origin == (0.0, 0.0, 0.0) and v.spacing[2] == 1.0


def test_truncated_pixel_data():
    with pytest.raises(DicomError, match="MR_truncated.dcm"):
        read_dicom(TEST_FILES / "MR_truncated.dcm")


def test_enhanced_multiframe(dicom_series, tmp_path):
    from highdicom.legacy import LegacyConvertedEnhancedMRImage

    folder = dicom_series(modality="MR", affine=AFFINES["oblique"])
    classic = medseg.read(folder)
    datasets = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    enhanced = LegacyConvertedEnhancedMRImage(
        datasets,
        series_instance_uid=pydicom.uid.generate_uid(),
        series_number=2,
        sop_instance_uid=pydicom.uid.generate_uid(),
        instance_number=1,
    )
    enhanced.save_as(tmp_path / "enhanced.dcm")
    v = read_dicom(tmp_path / "enhanced.dcm")
    assert np.allclose(v.affine, classic.affine, atol=1e-4)
    assert np.array_equal(v.numpy(), classic.numpy())


def test_missing_slice_is_read_with_a_larger_spacing_tolerance(dicom_series):
    folder = dicom_series()
    (folder / "slice_0004.dcm").unlink()
    with pytest.raises(DicomError, match=r"--spacing-tolerance 1\.01 .*input\.spacing_tolerance.*spacing_tolerance="):
        medseg.read(folder)
    v = medseg.read(folder, spacing_tolerance=1.1)
    assert v.spatial_shape[2] == 9


def test_headers_of_a_folder_are_parsed_once(dicom_series, monkeypatch):
    folder = dicom_series(shape=(8, 8, 6))
    calls: list[str] = []
    real = pydicom.dcmread

    def counting(fp, *args, **kwargs):
        if kwargs.get("stop_before_pixels"):
            calls.append(str(fp))
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", counting)
    medseg.read(folder)
    assert sorted(calls) == sorted(str(f) for f in folder.iterdir())  # each header once
    calls.clear()
    (series,) = find_series(folder)
    read_dicom(series)
    assert len(calls) == 6


def test_lone_multiframe_without_functional_groups_is_read_like_a_lone_classic_file(dicom_series, tmp_path):
    folder = dicom_series(shape=(8, 6, 4), spacing=(1.0, 1.0, 2.5))
    slices = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    ds = slices[0]
    ds.NumberOfFrames = len(slices)
    ds.SpacingBetweenSlices = 2.5
    ds.PixelData = b"".join(s.PixelData for s in slices)
    ds.save_as(tmp_path / "multiframe.dcm")
    with pytest.warns(InputWarning, match="4 frames are placed 2.5 mm apart"):
        v = read_dicom(tmp_path / "multiframe.dcm")
    classic = medseg.read(folder)
    assert np.array_equal(v.numpy(), classic.numpy())
    assert np.allclose(v.affine, classic.affine, atol=1e-4)
    del ds.ImagePositionPatient
    ds.save_as(tmp_path / "noposition.dcm")
    with pytest.warns(InputWarning, match="placed at the origin with identity orientation"):
        v = read_dicom(tmp_path / "noposition.dcm")
    assert v.spatial_shape == (8, 6, 4) and v.origin == (0.0, 0.0, 0.0)
    shutil.copy(tmp_path / "multiframe.dcm", folder / "extra.dcm")  # not alone in its series: cannot be placed
    ds2 = pydicom.dcmread(folder / "extra.dcm")
    ds2.SOPInstanceUID = pydicom.uid.generate_uid()
    ds2.save_as(folder / "extra.dcm")
    with pytest.raises(DicomError, match="move it to a folder of its own"):
        medseg.read(folder)
