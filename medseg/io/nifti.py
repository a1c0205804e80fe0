"""NIfTI-1/2 reading and writing with nibabel.

Compressed files (``.nii.gz``) are streamed through ISA-L's gzip (``isal.igzip``) instead of
Python's zlib: it decompresses the same file about 2× and compresses about 3–4× faster, at a
similar size (``benchmarks/RESULTS.md``, "Compressed NIfTI"); the decompressed bytes and the
arrays are identical. Where ``isal`` is not importable, nibabel's own gzip handling is used.
"""

from __future__ import annotations

import contextlib
import gzip
import struct
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medseg.core.volume import Volume
from medseg.errors import GeometryError, InputError, InputWarning
from medseg.io.atomic import atomic_path
from medseg.io.checks import check_allocation, check_stored_size, check_values

#: What nibabel raises for corrupt or inconsistent files (its own errors plus those of numpy/zlib/ISA-L/struct).
_NIBABEL_ERRORS: tuple[type[BaseException], ...] = (
    nib.filebasedimages.ImageFileError,
    nib.wrapstruct.WrapStructError,
    nib.spatialimages.HeaderDataError,
    nib.spatialimages.ImageDataError,
    gzip.BadGzipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    ValueError,
    TypeError,
    IndexError,
    OverflowError,
)
#: ISA-L compression level of written ``.nii.gz`` (1: about nibabel's default size, several times faster).
GZIP_LEVEL = 1


def read_nifti(path: Path) -> Volume:
    """Read a NIfTI file as a Volume.

    The affine is the one nibabel chooses (sform if valid, else qform); scaling
    (``scl_slope``/``scl_inter``) is applied. Shapes map to ``(C, X, Y, Z)``:
    2D ``(X, Y)`` → ``(1, X, Y, 1)``; 4D ``(X, Y, Z, T)`` → ``(T, X, Y, Z)``;
    5D ``(X, Y, Z, 1, C)`` (NIfTI vector intent) → ``(C, X, Y, Z)``.
    """
    with _open(path) as img:
        return _read_opened(path, img)


@contextlib.contextmanager
def _open(path: Path) -> Iterator[nib.Nifti1Image | nib.Nifti2Image]:
    """The image of ``path``, its data readable while the block runs (gzip streamed through ISA-L)."""
    isal = _isal() if str(path).lower().endswith(".gz") else None
    errors = (*_NIBABEL_ERRORS, isal[1]) if isal is not None else _NIBABEL_ERRORS
    try:
        with nib.imageglobals.LoggingOutputSuppressor():  # header fixes are reported by our errors, not logs
            if isal is None:
                yield nib.load(str(path))
                return
            with isal[0].open(path, "rb") as fh:
                head = fh.read(4)
                fh.seek(0)
                cls = nib.Nifti2Image if head in (struct.pack("<i", 540), struct.pack(">i", 540)) else nib.Nifti1Image
                holder = nib.FileHolder(filename=str(path), fileobj=fh)
                yield cls.from_file_map({"header": holder, "image": holder})
    except errors as exc:
        raise InputError(
            f"{path}: not a readable NIfTI file ({exc}); check the file is complete and really NIfTI"
        ) from exc


def _isal() -> tuple[Any, type[Exception]] | None:
    """ISA-L's gzip module and its error class, or None where isal is not installed."""
    try:
        from isal import igzip
        from isal.isal_zlib import IsalError
    except ImportError:  # the same bytes through nibabel's gzip, only slower
        return None
    return igzip, IsalError


def _read_opened(path: Path, img: nib.Nifti1Image | nib.Nifti2Image) -> Volume:
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: expected a NIfTI image, nibabel found {type(img).__name__}")
    shape = tuple(int(s) for s in img.shape)
    try:
        itemsize = img.get_data_dtype().itemsize
        offset = int(img.header.get_data_offset())
    except _NIBABEL_ERRORS as exc:
        raise InputError(f"{path}: NIfTI header is inconsistent ({exc}); re-export the file") from exc
    check_allocation(path, shape, itemsize)
    _check_file_size(path, shape, itemsize, offset)
    vector = len(shape) == 5 and shape[3] == 1  # (X, Y, Z, 1, C): NIfTI's vector intent
    if not vector and not 2 <= len(shape) <= 4:
        raise InputError(f"{path}: {len(shape)}D image of shape {shape}; medseg reads 2D, 3D and 4D (channels) NIfTI")
    try:
        with nib.imageglobals.LoggingOutputSuppressor():
            # one sequential copy in the file's (Fortran) order: transposing to C order costs more
            # than the whole pre-processing, and the steps follow the memory layout instead
            data = np.array(np.asanyarray(img.dataobj), order="K", copy=True)
            affine = img.affine
    except _NIBABEL_ERRORS as exc:
        raise InputError(f"{path}: truncated or corrupt image data ({exc}); re-export or re-copy the file") from exc
    if affine is None or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(
            f"{path}: the NIfTI header holds no usable affine (pixdim/qform/sform are zero, NaN or infinite: "
            f"{np.round(affine, 4).tolist() if affine is not None else None}); fix the header geometry"
        )
    check_values(path, data)
    if data.ndim == 2:
        data = data[None, :, :, None]
    elif data.ndim == 3:
        data = data[None]
    elif data.ndim == 4:
        data = np.moveaxis(data, 3, 0)
    else:
        data = np.moveaxis(data[:, :, :, 0, :], 3, 0)
    meta = {"source": str(path), "format": "nifti", "nifti_shape": list(shape), **_xforms(path, img.header, affine)}
    return Volume(data, affine, kind="intensity", meta=meta)


#: qform and sform farther apart than this (mm at the grid's far corner) are reported as conflicting.
XFORM_TOLERANCE_MM = 1e-3


def _xforms(path: Path, header: Any, affine: np.ndarray) -> dict[str, Any]:
    """The header's qform and sform with their codes, kept so outputs repeat them; a conflict is reported.

    medseg places voxels by nibabel's rule (the sform when its code is set, else the qform), as FSL and
    nibabel do. ITK-based viewers (3D Slicer, ITK-SNAP) may use the qform: when the two disagree the
    file appears elsewhere there, so the warning says which one medseg used and masks are written
    with this file's own qform and sform (see :func:`write_nifti`), which keeps them on the image in
    every viewer.
    """
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    if qform is None or sform is None or not int(qcode) or not int(scode):
        return {}
    extent = ([*list(header.get_data_shape()[:3]), 1, 1])[:3]
    corners = np.array(
        [
            [i * (extent[0] - 1), j * (extent[1] - 1), k * (extent[2] - 1), 1.0]
            for i in (0, 1)
            for j in (0, 1)
            for k in (0, 1)
        ]
    )
    apart = float(np.abs(corners @ (qform - sform).T)[:, :3].max())
    out = {
        "nifti_xforms": {
            "qform": qform.tolist(),
            "qform_code": int(qcode),
            "sform": sform.tolist(),
            "sform_code": int(scode),
        }
    }
    if apart > XFORM_TOLERANCE_MM:
        used = "sform" if np.allclose(affine, sform) else "qform"
        warnings.warn(
            f"{path}: the NIfTI qform and sform disagree (up to {apart:.1f} mm apart; qform axes "
            f"{''.join(nib.aff2axcodes(qform))}, sform axes {''.join(nib.aff2axcodes(sform))}); medseg uses the "
            f"{used} (nibabel's rule) and writes outputs with this file's qform and sform, so they overlay it in "
            "any viewer; ITK-based viewers may place the image by its qform. Fix the header if the qform is wrong "
            "(e.g. fslorient -copysform2qform)",
            InputWarning,
            stacklevel=4,
        )
    return out


def _check_file_size(path: Path, shape: tuple[int, ...], itemsize: int, offset: int) -> None:
    """Refuse, before allocating, a header promising more data than the file can hold."""
    size = path.stat().st_size
    compressed = str(path).lower().endswith(".gz")
    stored = size if compressed else size - offset
    check_stored_size(path, shape, itemsize, stored, "compressed" if compressed else "raw")


def write_nifti(volume: Volume, path: Path) -> None:
    """Write ``volume`` as NIfTI-1 with its exact affine (sform and qform, scanner code), units mm and s.

    One channel is written 3D ``(X, Y, Z)``, several channels 4D ``(X, Y, Z, C)``; one channel read
    from a 4D file of one volume ``(X, Y, Z, 1)`` (``meta["nifti_shape"]``) is written 4D again, so a
    mask on the input grid has the input's dimensionality. Booleans become uint8; label maps of int64
    are narrowed to the smallest fitting unsigned type so viewers open them.
    """
    data = _nifti_dtype(volume.numpy(), volume.kind)
    source_shape = list(volume.meta.get("nifti_shape") or [])
    keep_4d = data.shape[0] == 1 and source_shape == [*volume.spatial_shape, 1]
    data = data[0][..., None] if keep_4d else data[0] if data.shape[0] == 1 else np.moveaxis(data, 0, 3)
    img = nib.Nifti1Image(data, volume.affine)
    xforms = volume.meta.get("nifti_xforms")
    if xforms and np.allclose(volume.affine, xforms["sform"] if xforms["sform_code"] else xforms["qform"], atol=1e-6):
        # on the grid of a NIfTI input: repeat its qform and sform, so viewers overlay the two by either
        img.set_sform(np.asarray(xforms["sform"]), code=xforms["sform_code"])
        img.set_qform(np.asarray(xforms["qform"]), code=xforms["qform_code"])
    else:
        img.set_sform(volume.affine, code=1)
        try:
            img.set_qform(volume.affine, code=1)
        except Exception as exc:  # nibabel raises plain Exceptions for non-rigid affines
            raise GeometryError(f"{path}: affine cannot be stored as a NIfTI qform: {exc}") from exc
    img.header.set_xyzt_units("mm", "sec")
    if volume.kind == "label":
        img.header.set_intent("label")
    isal = _isal() if str(path).lower().endswith(".gz") else None
    with atomic_path(path) as tmp:
        if isal is None:
            nib.save(img, str(tmp))
        else:
            # no file name and no time in the gzip header: the same volume always gives the same bytes
            with (
                open(tmp, "wb") as raw,
                isal[0].IGzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=raw, mtime=0) as fh,
            ):
                holder = nib.FileHolder(filename=str(tmp), fileobj=fh)
                img.to_file_map({"header": holder, "image": holder})


def _nifti_dtype(data: np.ndarray, kind: str) -> np.ndarray:
    if data.dtype == bool:
        return data.astype(np.uint8)
    if kind == "label" and data.dtype.kind in "iu" and data.dtype.itemsize > 2 and data.size:
        lo, hi = int(data.min()), int(data.max())
        if lo >= 0:
            return data.astype(np.uint8 if hi < 256 else np.uint16 if hi < 65536 else np.uint32)
    if data.dtype == np.float16:
        return data.astype(np.float32)
    return data
