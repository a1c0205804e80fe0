"""Bad-input catalogue, images: every broken file gives one MedsegError naming the file and the problem.

Each builder makes one bad input in a fresh folder; the test reads it with ``medseg.read``
and checks the error class, that the message names the file and says what is wrong, and
that nothing was written beside the input (reading never writes).
"""

from __future__ import annotations

import gzip
import shutil
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medseg.core import Volume
from medseg.errors import DicomError, InputError, InputWarning, MedsegError
from medseg.io import read
from medseg.transforms import Crop, ZScore
from tests.robustness.conftest import PYDICOM_FILES, assert_empty, expect_error

Builder = Callable[[Path], Path]


def _nifti(folder: Path, data: np.ndarray, name: str = "img.nii", affine: np.ndarray | None = None) -> Path:
    path = folder / name
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def _patch_header(path: Path, offset: int, fmt: str, *values: float) -> Path:
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, offset, *values)
    path.write_bytes(bytes(raw))
    return path


def truncated_nifti(d: Path) -> Path:
    p = _nifti(d, np.ones((20, 20, 20), np.float32))
    p.write_bytes(p.read_bytes()[:10_000])
    return p


def truncated_gzip(d: Path) -> Path:
    p = _nifti(d, np.random.default_rng(0).random((20, 20, 20)).astype(np.float32), "img.nii.gz")
    p.write_bytes(p.read_bytes()[:-3000])
    return p


def corrupt_gzip(d: Path) -> Path:
    p = d / "img.nii.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 8)
    return p


def plain_nifti_named_gz(d: Path) -> Path:
    p = _nifti(d, np.ones((4, 4, 4), np.float32))
    return p.rename(d / "img.nii.gz")


def wrong_magic(d: Path) -> Path:
    p = _nifti(d, np.ones((4, 4, 4), np.float32))
    raw = bytearray(p.read_bytes())
    raw[344:348] = b"XYZ\x00"
    p.write_bytes(bytes(raw))
    return p


def empty_file(d: Path) -> Path:
    p = d / "img.nii"
    p.write_bytes(b"")
    return p


def five_d(d: Path) -> Path:
    return _nifti(d, np.zeros((4, 4, 4, 2, 3), np.float32))


def zero_size_axis(d: Path) -> Path:
    return _patch_header(_nifti(d, np.ones((4, 4, 4), np.int16)), 40, "<4h", 3, 4, 0, 4)


def huge_dimensions(d: Path) -> Path:  # 32767³ int16 = 64 TiB promised by a 400-byte file
    return _patch_header(_nifti(d, np.ones((4, 4, 4), np.int16)), 40, "<4h", 3, 32767, 32767, 32767)


def dimensions_beyond_file(d: Path) -> Path:  # under the allocation limit but far beyond the file
    return _patch_header(_nifti(d, np.ones((4, 4, 4), np.int16)), 40, "<4h", 3, 512, 512, 300)


def huge_gzip_dimensions(d: Path) -> Path:  # a 2 kB .nii.gz cannot inflate to 600 MiB (deflate ≤ 1032:1)
    p = _patch_header(_nifti(d, np.ones((4, 4, 4), np.int16)), 40, "<4h", 3, 1024, 1024, 300)
    gz = d / "img.nii.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    p.unlink()
    return gz


def complex_voxels(d: Path) -> Path:
    return _nifti(d, np.ones((4, 4, 4), np.complex64))


def rgb_struct_voxels(d: Path) -> Path:
    return _nifti(d, np.zeros((4, 4, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")]))


def zero_sform(d: Path) -> Path:  # sform_code 1 with an all-zero sform: no usable geometry
    p = _nifti(d, np.ones((4, 4, 4), np.float32))
    _patch_header(p, 252, "<2h", 0, 1)
    return _patch_header(p, 280, "<12f", *([0.0] * 12))


def unknown_suffix(d: Path) -> Path:
    p = d / "scan.bin"
    p.write_bytes(b"\x00" * 300)
    return p


def zip_archive(d: Path) -> Path:
    p = d / "scans.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("notes.txt", "no images here")
    return p


def folder_without_dicom(d: Path) -> Path:
    (d / "series").mkdir()
    (d / "series" / "notes.txt").write_text("not DICOM")
    (d / "series" / "image.raw").write_bytes(b"\x00" * 1000)
    return d / "series"


def missing_path(d: Path) -> Path:
    return d / "nowhere.nii.gz"


def sr_as_image(d: Path) -> Path:
    return Path(shutil.copy(PYDICOM_FILES / "test-SR.dcm", d / "report.dcm"))


def rtstruct_as_image(d: Path) -> Path:
    ds = pydicom.dcmread(PYDICOM_FILES / "rtstruct.dcm", force=True)
    ds.save_as(d / "rtstruct.dcm", enforce_file_format=True)
    return d / "rtstruct.dcm"


def unsupported_transfer_syntax(d: Path) -> Path:
    ds = pydicom.dcmread(PYDICOM_FILES / "JPEG2000.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
    ds.save_as(d / "video.dcm", enforce_file_format=True)
    return d / "video.dcm"


def bad_vr_value(d: Path) -> Path:  # NumberOfFrames "1A": pydicom's own damaged test file
    return Path(shutil.copy(PYDICOM_FILES / "badVR.dcm", d / "bad.dcm"))


def truncated_pixel_data(d: Path) -> Path:
    return Path(shutil.copy(PYDICOM_FILES / "MR_truncated.dcm", d / "mr.dcm"))


#: id → (builder, error class, fragments the message must contain)
CATALOGUE: dict[str, tuple[Builder, type[MedsegError], tuple[str, ...]]] = {
    "truncated_nifti": (truncated_nifti, InputError, ("truncated",)),
    "truncated_gzip": (truncated_gzip, InputError, ("truncated or corrupt",)),
    "corrupt_gzip": (corrupt_gzip, InputError, ("not a readable nifti",)),
    "plain_nifti_named_gz": (plain_nifti_named_gz, InputError, ("not a gzip",)),
    "wrong_magic": (wrong_magic, InputError, ("not a readable nifti",)),
    "empty_file": (empty_file, InputError, ("empty",)),
    "five_d": (five_d, InputError, ("5d", "2d, 3d and 4d")),
    "zero_size_axis": (zero_size_axis, InputError, ("zero-sized",)),
    "huge_dimensions": (huge_dimensions, InputError, ("gib", "limit")),
    "dimensions_beyond_file": (dimensions_beyond_file, InputError, ("truncated", "bytes")),
    "huge_gzip_dimensions": (huge_gzip_dimensions, InputError, ("cannot hold",)),
    "complex_voxels": (complex_voxels, InputError, ("not numeric",)),
    "rgb_struct_voxels": (rgb_struct_voxels, InputError, ("not numeric",)),
    "zero_sform": (zero_sform, InputError, ("no usable affine",)),
    "unknown_suffix": (unknown_suffix, InputError, ("not a recognised image",)),
    "zip_archive": (zip_archive, InputError, ("zip", "unpack")),
    "folder_without_dicom": (folder_without_dicom, DicomError, ("no dicom files",)),
    "missing_path": (missing_path, InputError, ("no such file",)),
    "sr_as_image": (sr_as_image, DicomError, ("structured report", "not an image")),
    "rtstruct_as_image": (rtstruct_as_image, DicomError, ("rt structure set", "not an image")),
    "unsupported_transfer_syntax": (unsupported_transfer_syntax, DicomError, ("cannot decode pixel data", "MPEG2")),
    "bad_vr_value": (bad_vr_value, DicomError, ("none is readable", "1A")),
    "truncated_pixel_data": (truncated_pixel_data, DicomError, ("pixel data",)),
}


@pytest.mark.parametrize("case", sorted(CATALOGUE))
def test_bad_image_file(case: str, tmp_path: Path) -> None:
    builder, error, fragments = CATALOGUE[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    path = builder(inputs)
    before = sorted(p.name for p in inputs.rglob("*"))
    expect_error(lambda: read(path), error, *fragments, name=path)
    assert sorted(p.name for p in inputs.rglob("*")) == before, "reading wrote files beside the input"


# ---- DICOM series built from the synthetic CT writer ------------------------------------------


def _slices(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


def _edit(path: Path, change: Callable[[pydicom.Dataset], None]) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


def test_dicom_slice_without_pixel_data(dicom_series) -> None:
    folder = dicom_series()
    bad = _slices(folder)[4]
    _edit(bad, lambda ds: delattr(ds, "PixelData"))
    expect_error(lambda: read(folder), DicomError, "no pixel data", name=bad)


def test_dicom_slice_without_position(dicom_series) -> None:
    folder = dicom_series()
    bad = _slices(folder)[3]
    _edit(bad, lambda ds: delattr(ds, "ImagePositionPatient"))
    expect_error(lambda: read(folder), DicomError, "missing ImagePositionPatient", name=bad)


def test_dicom_duplicate_slice(dicom_series) -> None:
    folder = dicom_series()
    src = _slices(folder)[5]
    dup = folder / "zz_copy.dcm"
    shutil.copy(src, dup)
    _edit(dup, lambda ds: setattr(ds, "SOPInstanceUID", pydicom.uid.generate_uid()))
    expect_error(lambda: read(folder), DicomError, "share a position", "split them", name=folder)


def test_dicom_missing_slice(dicom_series) -> None:
    folder = dicom_series()
    _slices(folder)[4].unlink()
    expect_error(lambda: read(folder), DicomError, "uneven slice spacing", "missing slices", name=folder)


def test_dicom_mixed_series(dicom_series) -> None:
    a = dicom_series("a", seed=1)
    b = dicom_series("b", shape=(16, 16, 6), seed=2)
    for f in _slices(b):
        shutil.move(f, a / f"b_{f.name}")
    expect_error(lambda: read(a), DicomError, "2 image series", "series_uid", name=a)


def test_dicom_mixed_orientations(dicom_series) -> None:
    folder = dicom_series()
    bad = _slices(folder)[2]
    _edit(bad, lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0, -1]))
    expect_error(lambda: read(folder), DicomError, "mixed orientations", bad.name, name=folder)


def test_dicom_slice_of_other_size(dicom_series) -> None:
    folder = dicom_series()
    other = dicom_series("other", shape=(16, 20, 10))
    src = _slices(other)[7]
    target = _slices(folder)[7]
    ds = pydicom.dcmread(src)
    ref = pydicom.dcmread(target)
    ds.SeriesInstanceUID = ref.SeriesInstanceUID
    ds.ImagePositionPatient = ref.ImagePositionPatient
    ds.save_as(target, enforce_file_format=True)
    expect_error(lambda: read(folder), DicomError, "different sizes", name=folder)


# ---- values that read but must not flow on silently ------------------------------------------


def test_nan_and_inf_voxels_warn_then_intensity_steps_refuse(tmp_path: Path) -> None:
    data = np.ones((6, 6, 6), np.float32)
    data[1, 2, 3] = np.nan
    data[2, 2, 2] = np.inf
    path = _nifti(tmp_path, data, "nan.nii.gz")
    with pytest.warns(InputWarning, match=r"nan\.nii\.gz: 2 voxels are NaN or Inf"):
        vol = read(path)
    expect_error(lambda: ZScore()(vol), InputError, "nan or infinite", name=path)


def test_2d_image_where_3d_is_needed(tmp_path: Path) -> None:
    path = _nifti(tmp_path, np.ones((16, 16), np.float32), "slice.nii")
    vol = read(path)
    assert vol.spatial_shape == (16, 16, 1)
    expect_error(lambda: Crop(shape=(8, 8, 8))(vol), InputError, "larger than the volume", name=path)


def test_volume_refuses_bad_arrays() -> None:
    with pytest.raises(InputError, match="zero-sized axis"):
        Volume(np.ones((1, 4, 0, 4)), np.eye(4))
    with pytest.raises(InputError, match=r"channel-first \(C, X, Y, Z\)"):
        Volume(np.ones((4, 4, 4, 2, 2)), np.eye(4))


def test_read_refuses_without_python_warnings_escaping(tmp_path: Path) -> None:
    """Damaged DICOM values reach the user as one InputWarning naming the file, not pydicom's UserWarnings."""
    src = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    path = tmp_path / "long.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src.SeriesDescription = "x" * 200  # LO is at most 64 characters
        src.save_as(path, enforce_file_format=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read(path)
    assert all(issubclass(w.category, InputWarning) for w in caught), [str(w.message) for w in caught]
    assert_empty(tmp_path / "out")
