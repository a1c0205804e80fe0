"""Fuzzing the NIfTI and DICOM readers with mutated real files.

Seeds: a crop of Colin27 (``sample_data/colin27``), slices of the real MR series
(``sample_data/mr_dicom``) and pydicom's test files. Mutations: byte flips, truncations,
header field changes. The only exceptions allowed out of ``medseg.read`` are
``medseg.errors`` ones; InputWarnings are fine. Counts per profile: see README.md.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataelem import DataElement

import medseg.io.checks
from medseg.core import Volume
from medseg.errors import MedsegError
from medseg.io import read
from tests.robustness.conftest import PYDICOM_FILES, SAMPLE

pytestmark = pytest.mark.usefixtures("quiet_inputs")

#: NIfTI-1 header fields: name → (byte offset, struct format).
NIFTI_FIELDS = {
    "sizeof_hdr": (0, "<i"),
    "dim0": (40, "<h"),
    "dim1": (42, "<h"),
    "dim2": (44, "<h"),
    "dim3": (46, "<h"),
    "dim4": (48, "<h"),
    "dim5": (50, "<h"),
    "intent_code": (68, "<h"),
    "datatype": (70, "<h"),
    "bitpix": (72, "<h"),
    "pixdim0": (76, "<f"),
    "pixdim1": (80, "<f"),
    "pixdim3": (88, "<f"),
    "vox_offset": (108, "<f"),
    "scl_slope": (112, "<f"),
    "scl_inter": (116, "<f"),
    "qform_code": (252, "<h"),
    "sform_code": (254, "<h"),
    "quatern_b": (256, "<f"),
    "qoffset_x": (268, "<f"),
    "srow_x0": (280, "<f"),
    "srow_z2": (320, "<f"),
}
SPECIAL_NUMBERS = [0, -1, 1, 2, 7, 255, 32767, -32768, 1e30, -1e30, float("nan"), float("inf")]


@pytest.fixture(autouse=True)
def _small_allocation_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Headers claiming more than 64 MiB are refused, so no fuzzed header allocates much memory."""
    monkeypatch.setattr(medseg.io.checks, "MAX_IMAGE_BYTES", 64 * 1024**2)


def _read_must_be_clean(path: Path | list[Path]) -> None:
    try:
        vol = read(path)  # type: ignore[arg-type]
    except MedsegError:
        return
    assert isinstance(vol, Volume)
    assert vol.array.ndim == 4 and min(vol.array.shape) > 0
    assert np.all(np.isfinite(vol.affine))


def _field_value(fmt: str, value: float) -> bytes:
    if fmt.endswith(("h", "i")):
        limit = 2**15 if fmt.endswith("h") else 2**31
        v = 0 if not np.isfinite(value) else int(np.clip(value, -limit, limit - 1))
        return struct.pack(fmt, v)
    return struct.pack(fmt, value)


nifti_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 351), st.integers(1, 255)),  # header byte
    st.tuples(st.just("flip"), st.integers(352, 8000), st.integers(1, 255)),  # data byte
    st.tuples(st.just("truncate"), st.integers(0, 8000), st.just(0)),
    st.tuples(st.just("field"), st.sampled_from(sorted(NIFTI_FIELDS)), st.sampled_from(SPECIAL_NUMBERS)),
    st.tuples(st.just("field"), st.sampled_from(sorted(NIFTI_FIELDS)), st.integers(-40000, 40000)),
)


def _mutate(raw: bytes, mutation: tuple) -> bytes:
    kind, where, value = mutation
    data = bytearray(raw)
    if kind == "flip":
        if where < len(data):
            data[where] ^= value
    elif kind == "truncate":
        data = data[: min(where, len(data) - 1)]
    else:
        offset, fmt = NIFTI_FIELDS[where]
        packed = _field_value(fmt, value)
        data[offset : offset + len(packed)] = packed
    return bytes(data)


@given(mutations=st.lists(nifti_mutation, min_size=1, max_size=3))
def test_nifti_mutations_raise_only_medseg_errors(small_nifti: dict[str, Path], tmp_path: Path, mutations) -> None:
    raw = small_nifti[".nii"].read_bytes()
    for m in mutations:
        raw = _mutate(raw, m)
    target = tmp_path / "fuzzed.nii"
    target.write_bytes(raw)
    _read_must_be_clean(target)
    gz = tmp_path / "fuzzed.nii.gz"
    gz.write_bytes(gzip.compress(raw, compresslevel=1))
    _read_must_be_clean(gz)


@given(
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_gzip_stream_mutations_raise_only_medseg_errors(
    small_nifti: dict[str, Path], tmp_path: Path, flips, cut
) -> None:
    data = bytearray(small_nifti[".nii.gz"].read_bytes())
    for pos, value in flips:
        data[pos % len(data)] ^= value
    if cut is not None:
        data = data[: cut % len(data)]
    target = tmp_path / "fuzzed.nii.gz"
    target.write_bytes(bytes(data))
    _read_must_be_clean(target)


# ---- DICOM ---------------------------------------------------------------------------

#: Tags whose values the reader relies on, with the VR they normally have.
DICOM_TAGS = {
    "Rows": "US",
    "Columns": "US",
    "BitsAllocated": "US",
    "BitsStored": "US",
    "HighBit": "US",
    "PixelRepresentation": "US",
    "SamplesPerPixel": "US",
    "PhotometricInterpretation": "CS",
    "NumberOfFrames": "IS",
    "ImagePositionPatient": "DS",
    "ImageOrientationPatient": "DS",
    "PixelSpacing": "DS",
    "SliceThickness": "DS",
    "RescaleSlope": "DS",
    "RescaleIntercept": "DS",
    "SOPClassUID": "UI",
    "SeriesInstanceUID": "UI",
    "PixelData": "OW",
}
DICOM_VALUES = st.one_of(
    st.sampled_from(["", "abc", "1A", "0", "-1", "65535", "1e309", "nan", "1\\2", "1\\2\\3\\4\\5\\6\\7", "../../x"]),
    st.integers(-(2**31), 2**31 - 1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
dicom_mutation = st.one_of(
    st.tuples(st.just("delete"), st.sampled_from(sorted(DICOM_TAGS)), st.just("")),
    st.tuples(st.just("set"), st.sampled_from(sorted(DICOM_TAGS)), DICOM_VALUES),
    st.tuples(
        st.just("numeric"),
        st.sampled_from(["Rows", "Columns", "BitsAllocated", "SamplesPerPixel"]),
        st.sampled_from([0, 1, 3, 7, 8, 12, 16, 32, 64, 65535]),
    ),
    st.tuples(
        st.just("syntax"),
        st.sampled_from(
            [
                "1.2.840.10008.1.2",
                "1.2.840.10008.1.2.2",
                "1.2.840.10008.1.2.4.50",
                "1.2.840.10008.1.2.4.90",
                "1.2.840.10008.1.2.5",
                "1.2.840.10008.1.2.4.100",
                "1.2.3.4",
                "",
            ]
        ),
        st.just(""),
    ),
)


def _dicom_set(ds: pydicom.Dataset, mutation: tuple) -> None:
    kind, name, value = mutation
    tag = pydicom.datadict.tag_for_keyword(name) if kind != "syntax" else None
    if kind == "delete":
        if name in ds:
            del ds[name]
    elif kind == "set":  # written as text (VR LO/OB), so even numeric tags get malformed text
        if name == "PixelData":
            ds[tag] = DataElement(tag, "OB", value.encode("latin-1", "replace"))
        else:
            ds[tag] = DataElement(tag, "LO", value)
    elif kind == "numeric":
        ds[tag] = DataElement(tag, "US", int(value))
    else:
        ds.file_meta.TransferSyntaxUID = name


def _save(ds: pydicom.Dataset, path: Path) -> bool:
    """Write ``ds`` keeping its transfer syntax; False when pydicom itself refuses to encode it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about the invalid values we write on purpose
            ds.save_as(path, enforce_file_format=True)
    except (ValueError, TypeError, AttributeError, KeyError, struct.error, OverflowError, NotImplementedError):
        return False
    return True


@pytest.fixture(scope="module")
def mr_slices(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three consecutive slices of the real oblique MR series."""
    files = sorted((SAMPLE / "mr_dicom").glob("*.dcm"))[8:11]
    folder = tmp_path_factory.mktemp("mr_seed")
    for f in files:
        shutil.copy(f, folder / f.name)
    return sorted(folder.iterdir())


@given(index=st.integers(0, 2), mutations=st.lists(dicom_mutation, min_size=1, max_size=3))
def test_dicom_series_header_changes_raise_only_medseg_errors(
    mr_slices: list[Path], tmp_path: Path, index, mutations
) -> None:
    folder = tmp_path / "series"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for i, f in enumerate(mr_slices):
        if i != index:
            shutil.copy(f, folder / f.name)
            continue
        ds = pydicom.dcmread(f)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for m in mutations:
                _dicom_set(ds, m)
        if not _save(ds, folder / f.name):
            return
    _read_must_be_clean(folder)


@given(
    index=st.integers(0, 2),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=6),
    header_only=st.booleans(),
    cut=st.one_of(st.none(), st.integers(132, 10**6)),
)
def test_dicom_series_byte_mutations_raise_only_medseg_errors(
    mr_slices: list[Path], tmp_path: Path, index, flips, header_only, cut
) -> None:
    folder = tmp_path / "series"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for f in mr_slices:
        shutil.copy(f, folder / f.name)
    target = folder / mr_slices[index].name
    data = bytearray(target.read_bytes())
    span = 2000 if header_only else len(data)
    for pos, value in flips:
        data[132 + pos % (span - 132)] ^= value  # keep the preamble so the file is still taken as DICOM
    if cut is not None:
        data = data[: cut % len(data)]
    target.write_bytes(bytes(data))
    _read_must_be_clean(folder)


PYDICOM_SEEDS = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "JPEG2000.dcm",
    "SC_rgb_small_odd.dcm",
    "rtstruct.dcm",
    "test-SR.dcm",
    "liver_1frame.dcm",
    "MR_small_bigendian.dcm",
]


@given(
    seed=st.sampled_from(PYDICOM_SEEDS),
    mutations=st.lists(
        st.one_of(dicom_mutation, st.tuples(st.just("flip"), st.integers(132, 10**5), st.integers(1, 255))),
        min_size=1,
        max_size=3,
    ),
)
def test_pydicom_test_files_mutated_raise_only_medseg_errors(tmp_path: Path, seed, mutations) -> None:
    src = PYDICOM_FILES / seed
    if not src.exists():
        return
    target = tmp_path / "fuzzed.dcm"
    ds = pydicom.dcmread(src, force=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in (m for m in mutations if m[0] != "flip"):
            _dicom_set(ds, m)
    if not _save(ds, target):
        return
    data = bytearray(target.read_bytes())
    for _, pos, value in (m for m in mutations if m[0] == "flip"):
        data[132 + pos % (len(data) - 132)] ^= value
    target.write_bytes(bytes(data))
    _read_must_be_clean(target)


@pytest.mark.parametrize(
    "seed",
    [
        *PYDICOM_SEEDS,
        "badVR.dcm",
        "MR_truncated.dcm",
        "rtplan_truncated.dcm",
        "no_meta.dcm",
        "UN_sequence.dcm",
        "waveform_ecg.dcm",
        "rtdose.dcm",
    ],
)
def test_pydicom_test_files_as_given(seed: str) -> None:
    if not (PYDICOM_FILES / seed).exists():
        pytest.skip(f"{seed} not shipped with this pydicom")
    _read_must_be_clean(PYDICOM_FILES / seed)
