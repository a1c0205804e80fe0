"""Reading and writing volumes: NIfTI, NRRD/MHA/MHD, DICOM series, 2D images.

``read(path)`` picks the reader from the content and suffix; ``write(volume, path)``
picks the writer from the suffix and always writes atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from medseg.core.volume import Volume
from medseg.errors import InputError, OutputError
from medseg.io.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from medseg.io.dicom import SPACING_TOLERANCE, SeriesInfo, find_series, is_dicom_file, read_dicom
from medseg.io.image2d import read_image2d, write_image2d
from medseg.io.itk import read_itk, write_itk
from medseg.io.naming import (
    IMAGE2D_SUFFIXES,
    ITK_SUFFIXES,
    NIFTI_SUFFIXES,
    SUFFIXES,
    VOLUME_SUFFIXES,
    file_stem,
    image_suffix,
)
from medseg.io.nifti import read_nifti, write_nifti

__all__ = [
    "SPACING_TOLERANCE",
    "SUFFIXES",
    "VOLUME_SUFFIXES",
    "SeriesInfo",
    "atomic_path",
    "file_stem",
    "find_series",
    "image_suffix",
    "is_dicom_file",
    "read",
    "read_channels",
    "read_dicom",
    "write",
    "write_bytes_atomic",
    "write_text_atomic",
]


def read(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    series_uid: str | None = None,
    spacing_tolerance: float = SPACING_TOLERANCE,
) -> Volume:
    """Read an image file, a DICOM folder, or a list of DICOM files as a :class:`Volume`.

    Args:
        path: NIfTI (``.nii``, ``.nii.gz``), NRRD/MHA/MHD, PNG/TIFF, a DICOM file,
            a folder holding one DICOM series (searched recursively), or a list of DICOM files.
        series_uid: the series to read when a DICOM folder holds several.
        spacing_tolerance: DICOM: largest deviation of a slice gap from the median gap, as a
            fraction (0.05 = 5 %); a larger one (missing slices) is an error.

    Raises:
        InputError: the path is missing, not an image, corrupt, or ambiguous;
            the message names the file and what to do.
    """
    if not isinstance(path, (str, os.PathLike)):
        return read_dicom([Path(p) for p in path], series_uid=series_uid, spacing_tolerance=spacing_tolerance)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_dir():
        return read_dicom(p, series_uid=series_uid, spacing_tolerance=spacing_tolerance)
    suffix = image_suffix(p)
    if suffix in NIFTI_SUFFIXES:
        return read_nifti(p)
    if suffix in ITK_SUFFIXES:
        return read_itk(p)
    if suffix in IMAGE2D_SUFFIXES:
        return read_image2d(p)
    if is_dicom_file(p):
        return read_dicom(p, series_uid=series_uid, spacing_tolerance=spacing_tolerance)
    if p.suffix.lower() == ".zip":
        raise InputError(f"{p}: zip archives are not read directly; unpack it and give the folder")
    raise InputError(
        f"{p}: not a recognised image (suffix '{p.suffix}', no DICOM preamble); medseg reads "
        f"{', '.join(SUFFIXES)}, DICOM files and DICOM folders"
    )


def read_channels(
    paths: Sequence[str | os.PathLike[str]],
    *,
    series_uid: str | None = None,
    spacing_tolerance: float = SPACING_TOLERANCE,
) -> Volume:
    """Read one image per channel (e.g. nnU-Net ``CASE_0000``, ``CASE_0001``) as one Volume.

    Every channel must lie on the first one's grid (same shape, affines within
    :data:`medseg.core.geometry.GRID_TOLERANCE_MM`); the result has the channels concatenated along C and the first file's meta
    (with ``meta["sources"]`` listing all files).

    Raises:
        GeometryError: a channel is on another grid (names both files).
    """
    import numpy as np

    if not paths:
        raise InputError("no image files given")
    vols = [read(p, series_uid=series_uid, spacing_tolerance=spacing_tolerance) for p in paths]
    first = vols[0]
    for i, v in enumerate(vols[1:], start=1):
        first.require_grid(v, f"channel {i}", fix="resample the channels onto one grid (e.g. with SimpleITK)")
    if len(vols) == 1:
        return first
    arrays = [v.numpy() for v in vols]
    dtype = np.result_type(*arrays)
    meta = {**first.meta, "sources": [str(p) for p in paths]}
    return first.replace(array=np.concatenate([a.astype(dtype, copy=False) for a in arrays]), meta=meta)


def write(volume: Volume, path: str | os.PathLike[str]) -> Path:
    """Write ``volume`` atomically; the format comes from the suffix. Returns the path.

    Raises:
        OutputError: unknown suffix or the file cannot be written.
        GeometryError: the affine cannot be stored in that format (e.g. shear in NRRD).
    """
    p = Path(path)
    suffix = image_suffix(p)
    if suffix in NIFTI_SUFFIXES:
        write_nifti(volume, p)
    elif suffix in ITK_SUFFIXES:
        write_itk(volume, p)
    elif suffix in IMAGE2D_SUFFIXES:
        write_image2d(volume, p)
    else:
        raise OutputError(f"{p}: unknown output format '{p.suffix}'; use one of {', '.join(SUFFIXES)}")
    return p
