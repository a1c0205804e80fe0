"""Reading and writing volumes: NIfTI, NRRD/MHA/MHD, DICOM series, DICOM SEG and RTSTRUCT, 2D images.

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
from medseg.io.clinical import Reference, file_label_kind
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
from medseg.io.roi_names import LabelNames

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
    "read_label",
    "write",
    "write_bytes_atomic",
    "write_text_atomic",
]


def read(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    series_uid: str | None = None,
    spacing_tolerance: float = SPACING_TOLERANCE,
    reference: Reference | None = None,
    labels: LabelNames | None = None,
    as_channels: bool = False,
) -> Volume:
    """Read an image file, a DICOM folder, a list of DICOM files, or a DICOM SEG/RTSTRUCT as a :class:`Volume`.

    Args:
        path: NIfTI (``.nii``, ``.nii.gz``), NRRD/MHA/MHD, PNG/TIFF, a DICOM file,
            a folder holding one DICOM series (searched recursively), a list of DICOM files,
            or a DICOM SEG or RTSTRUCT file (read as a label map).
        series_uid: the series to read when a DICOM folder holds several.
        spacing_tolerance: DICOM: largest deviation of a slice gap from the median gap, as a
            fraction (0.05 = 5 %); a larger one (missing slices) is an error.
        reference: SEG/RTSTRUCT only: the image series they were made on (Volume, DICOM folder,
            file list or image file); the labels come out on exactly its grid. A SEG without it
            is read on its own frames' geometry; an RTSTRUCT without it looks for the series beside it.
        labels: SEG/RTSTRUCT only: ``{value: name}`` or ``{value: [name, synonym, "PATTERN*"]}``
            mapping ROI/segment names to label values (see :mod:`medseg.io.roi_names`).
        as_channels: SEG/RTSTRUCT only: one channel per label instead of a label map.

    Raises:
        InputError: the path is missing, not an image, corrupt, or ambiguous;
            the message names the file and what to do.
    """
    if not isinstance(path, (str, os.PathLike)):
        _no_label_options(path, reference, labels, as_channels)
        return read_dicom([Path(p) for p in path], series_uid=series_uid, spacing_tolerance=spacing_tolerance)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_file() and (p.suffix.lower() == ".dcm" or is_dicom_file(p)):
        kind = file_label_kind(p, force=not is_dicom_file(p))
        if kind == "seg":
            from medseg.io.seg import read_seg

            return read_seg(p, reference=reference, labels=labels, as_channels=as_channels)
        if kind == "rtstruct":
            from medseg.io.rtstruct import read_rtstruct

            return read_rtstruct(p, reference=reference, labels=labels, as_channels=as_channels)
    _no_label_options(p, reference, labels, as_channels)
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


def _no_label_options(path: object, reference: object, labels: object, as_channels: bool) -> None:
    given = [n for n, v in (("reference", reference), ("labels", labels), ("as_channels", as_channels)) if v]
    if given:
        raise InputError(
            f"{path}: {', '.join(given)} apply to DICOM SEG and RTSTRUCT files only; this is an image (drop them)"
        )


def read_label(path: str | os.PathLike[str], *, reference: Volume, labels: LabelNames | None = None) -> Volume:
    """The label map of a case whose image is ``reference``.

    A DICOM SEG or RTSTRUCT is rasterised on the reference's grid (``labels`` maps its ROI/segment
    names to values); any other label file (NIfTI, NRRD, ...) is read as it is, its grid left for
    the caller to check.
    """
    p = Path(path)
    dicom = p.is_file() and (p.suffix.lower() == ".dcm" or is_dicom_file(p))
    if dicom and file_label_kind(p, force=not is_dicom_file(p)) is not None:
        return read(p, reference=reference, labels=labels)
    return read(p).replace(kind="label")


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
