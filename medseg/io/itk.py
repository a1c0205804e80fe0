"""NRRD, MHA/MHD (and other ITK formats) through SimpleITK.

ITK works in LPS; the conversion to medseg's RAS affines happens only here, via
:data:`medseg.core.geometry.LPS_TO_RAS`. ITK arrays come as ``(Z, Y, X)``; medseg
arrays are ``(C, X, Y, Z)``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg.core import geometry
from medseg.core.volume import Volume
from medseg.errors import GeometryError, InputError, OutputError
from medseg.io.atomic import atomic_path
from medseg.io.checks import check_allocation, check_stored_size, check_values
from medseg.io.itk_header import stored_data


def affine_from_sitk(image: sitk.Image) -> np.ndarray:
    """RAS affine of a 3D SimpleITK image (2D images get a unit third axis)."""
    dim = image.GetDimension()
    d = np.eye(3)
    d[:dim, :dim] = np.array(image.GetDirection()).reshape(dim, dim)
    sp = np.ones(3)
    sp[:dim] = image.GetSpacing()
    org = np.zeros(3)
    org[:dim] = image.GetOrigin()
    return geometry.LPS_TO_RAS @ geometry.make_affine(sp, org, d)


def sitk_geometry(affine: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(spacing, origin, direction)`` in ITK's LPS convention for a RAS affine."""
    if geometry.is_sheared(affine):
        raise GeometryError(
            "affine is sheared (non-orthogonal axes, e.g. gantry tilt) and cannot be stored in "
            "ITK formats (NRRD/MHA); write NIfTI instead or resample to an orthogonal grid"
        )
    lps = geometry.LPS_TO_RAS @ affine
    return (
        tuple(geometry.spacing(lps)),
        tuple(float(v) for v in lps[:3, 3]),
        tuple(float(v) for v in geometry.direction(lps).ravel()),
    )


def volume_to_sitk(volume: Volume) -> sitk.Image:
    """A 3D SimpleITK image (vector-valued when C > 1) on the volume's grid."""
    data = volume.numpy()
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.shape[0] == 1:
        image = sitk.GetImageFromArray(np.ascontiguousarray(data[0].transpose(2, 1, 0)))
    else:
        image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(3, 2, 1, 0)), isVector=True)
    sp, org, d = sitk_geometry(volume.affine)
    image.SetSpacing(sp)
    image.SetOrigin(org)
    image.SetDirection(d)
    return image


def read_itk(path: Path) -> Volume:
    """Read an NRRD/MHA/MHD (or other ITK-readable) image as a Volume."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        size = tuple(reader.GetSize())
        components = reader.GetNumberOfComponents()
        check_allocation(path, size, 8 * components)
        data = stored_data(path)
        if data is not None:  # before SimpleITK allocates what the header declares
            shape = (*size, components) if components > 1 else size
            check_stored_size(
                path,
                shape,
                _itemsize(reader),
                data.stored,
                data.encoding,
                data.file,
                compressed_size=data.compressed_size,
            )
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(
            f"{path}: SimpleITK could not read the file ({_reason(exc)}); the file is damaged or truncated: "
            "re-export or re-copy it"
        ) from exc
    dim = image.GetDimension()
    if dim not in (2, 3):
        raise InputError(f"{path}: {dim}D image; medseg reads 2D and 3D ITK images (channels as vector pixels)")
    arr = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        arr = np.moveaxis(arr, -1, 0)  # (C, [Z,] Y, X)
    else:
        arr = arr[None]
    arr = arr.transpose(0, 2, 1)[..., None] if dim == 2 else arr.transpose(0, 3, 2, 1)
    check_values(path, arr)
    meta: dict[str, object] = {"source": str(path), "format": "itk"}
    segments = slicer_segment_names(image)
    if segments:
        meta["labels"] = segments
    return Volume(np.ascontiguousarray(arr), affine_from_sitk(image), kind="intensity", meta=meta)


def _itemsize(reader: sitk.ImageFileReader) -> int:
    """Bytes per stored component of the file ``reader`` has read the header of ("16-bit signed integer": 2)."""
    name = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    bits = re.search(r"(\d+)-bit", name)
    return (int(bits.group(1)) // 8 if bits else 1) * (2 if name.startswith("complex") else 1)


def _reason(exc: RuntimeError) -> str:
    """SimpleITK's reason in one line, without the stale errno text MetaIO adds ("No such file or directory")."""
    text = str(exc).strip()
    line = text.splitlines()[-1].strip() if text else ""
    line = re.sub(r"^Reason:\s*", "", line)
    if not line or line.lower() in ("no such file or directory", "success"):
        return "its data could not be decoded"
    return line


def slicer_segment_names(image: sitk.Image) -> dict[int, str]:
    """``{label value: name}`` of a 3D Slicer segmentation (``SegmentN_Name``/``SegmentN_LabelValue``
    keys of a ``.seg.nrrd``; one layer); {} for other images."""
    keys = set(image.GetMetaDataKeys())
    out: dict[int, str] = {}
    n = 0
    while f"Segment{n}_Name" in keys:
        value_key = f"Segment{n}_LabelValue"
        value = image.GetMetaData(value_key) if value_key in keys else str(n + 1)
        if value.strip().isdigit() and int(value) > 0:
            out[int(value)] = image.GetMetaData(f"Segment{n}_Name")
        n += 1
    return out


def write_itk(volume: Volume, path: Path, *, compress: bool = True) -> None:
    """Write ``volume`` with SimpleITK (format from the suffix), atomically."""
    image = volume_to_sitk(volume)
    if path.suffix.lower() == ".mhd":  # header + raw pair: write both in a temp folder, then move
        _write_mhd(image, path, compress)
        return
    with atomic_path(path) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), compress)
        except RuntimeError as exc:
            raise OutputError(f"{path}: SimpleITK could not write: {str(exc).strip().splitlines()[-1]}") from exc


def _write_mhd(image: sitk.Image, path: Path, compress: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tmp-") as tmpdir:
        tmp = Path(tmpdir) / path.name
        try:
            sitk.WriteImage(image, str(tmp), compress)
        except RuntimeError as exc:
            raise OutputError(f"{path}: SimpleITK could not write: {str(exc).strip().splitlines()[-1]}") from exc
        parts = sorted(Path(tmpdir).iterdir(), key=lambda p: p.suffix.lower() == ".mhd")
        for part in parts:  # data file first, header last: a header never points at nothing
            os.replace(part, path.parent / part.name)
