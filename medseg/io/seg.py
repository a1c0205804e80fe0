"""Reading DICOM Segmentations (SEG) as label Volumes.

Binary and fractional SEGs, frames in any order, frames left out where a segment is
empty (as highdicom and dcmqi write them). Each frame is placed by its
ImagePositionPatient through the inverse of the target grid's affine, so any target on
the same grid works (a DICOM series, or a NIfTI of it). Without a reference the target is
the geometry of the SEG's own frames (a regular stack spanning the first to the last frame
position, gaps allowed); with a reference it is the reference's grid, exactly.

Segment numbers become label values: through ``labels`` (names, synonyms and patterns
matched against the SegmentLabel, see :mod:`medseg.io.roi_names`) when given, else the
value medseg wrote in the TrackingID (``"CASE label N"``), else the segment number.
Fractions are thresholded at 0.5 for label maps. Overlapping segments: the higher label
value wins (reported); ``as_channels=True`` keeps one channel per segment.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from medseg.core import geometry
from medseg.core.volume import Volume
from medseg.errors import DicomError, GeometryError, InputWarning
from medseg.io.checks import check_allocation
from medseg.io.clinical import (
    SEG_SOP_CLASS,
    Canvas,
    Reference,
    labels_for,
    malformed,
    read_dataset,
    resolve_reference,
)
from medseg.io.dicom_pixels import PYDICOM_ERRORS, pydicom_warnings
from medseg.io.roi_names import LabelNames

log = logging.getLogger(__name__)

__all__ = ["POSITION_TOLERANCE", "SEG_SOP_CLASS", "read_dicom_seg", "read_seg"]

_TRACKING = re.compile(r"label (\d+)$")
#: Largest distance (in voxels) of a SEG frame from a slice of the target grid; real series jitter by ~0.1 voxel.
POSITION_TOLERANCE = 0.25


def read_seg(
    path: str | Path,
    *,
    reference: Reference | None = None,
    labels: LabelNames | None = None,
    as_channels: bool = False,
) -> Volume:
    """Read a DICOM SEG as a label Volume.

    Args:
        path: the SEG file.
        reference: the image it was made on (Volume, DICOM folder or file list, NIfTI...):
            the result is then on exactly that grid. Without it, on the SEG's own frame geometry.
        labels: ``{value: [name, synonym, pattern, ...]}`` to map segment labels to values.
        as_channels: one channel per segment (uint8 0/1, or float32 fractions for a fractional
            SEG) in label-value order, instead of a label map.

    Returns:
        ``(1, X, Y, Z)`` label map (uint8, uint16 above 255), or ``(S, X, Y, Z)`` channels.
        ``meta``: ``labels`` (value → name), ``segments`` (number, label, value, category and
        type codes), ``unmapped`` segment labels, ``overlap_voxels``, UIDs.

    Raises:
        DicomError: not a SEG, no segments, frames referencing instances the reference lacks,
            undecodable frames, an ambiguous label.
        GeometryError: frames off the reference's slices, or planes that do not match it.
    """
    p = Path(path)
    with malformed(p, "DICOM SEG"):
        return _read_seg(p, reference, labels, as_channels)


def _read_seg(p: Path, reference: Reference | None, labels: LabelNames | None, as_channels: bool) -> Volume:
    ds = read_dataset(p, pixels=True)
    if str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        raise DicomError(f"{p}: not a DICOM Segmentation (SOP class {ds.get('SOPClassUID', 'missing')})")
    segments = _segments(p, ds)
    numbers = [s["number"] for s in segments]
    if labels is None:
        value_of = _default_values(segments)
        unmapped: list[str] = []
    else:
        by_index, unmapped = labels_for(p, [s["label"] for s in segments], labels, "segment")
        value_of = {numbers[i]: v for i, v in by_index.items()}
    names = {
        v: (labels[v][0] if labels is not None else s["label"]) for s in segments if (v := value_of.get(s["number"]))
    }
    for s in segments:
        s["value"] = value_of.get(s["number"])
    frames = _frame_groups(p, ds, set(numbers))
    ref = resolve_reference(reference, p) if reference is not None else None
    if ref is not None:
        affine, shape, target = ref.affine, ref.spatial_shape, f"the reference {ref.meta.get('source') or 'image'}"
    else:
        (affine, shape), target = _own_grid(p, ds, frames), "the SEG's own grid"
    _check_plane(p, ds, frames[0] if frames else None, affine, shape, target)
    if ref is not None:
        _check_sources(p, ds, ref)
    fractional = str(ds.get("SegmentationType", "BINARY")).upper() == "FRACTIONAL"
    canvas = Canvas(p, shape, sorted(names), as_channels=as_channels, fractional=fractional)
    _paint(p, ds, frames, affine, shape, value_of, canvas, fractional, target)
    meta: dict[str, Any] = {
        "source": str(p),
        "format": "dicom-seg",
        "labels": dict(sorted(names.items())),
        "segments": segments,
        "unmapped": unmapped,
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "referenced_series_uids": [str(s.get("SeriesInstanceUID", "")) for s in ds.get("ReferencedSeriesSequence", [])],
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "")),
    }
    if as_channels:
        meta["channels"] = [names[v] for v in canvas.values]
        kind = "probability" if fractional else "label"
        return Volume(canvas.array, affine, kind=kind, meta=meta)  # type: ignore[arg-type]
    meta["overlap_voxels"] = canvas.report_overlaps(p, names, "segment")
    return Volume(canvas.array, affine, kind="label", meta=meta)


def read_dicom_seg(path: str | Path, reference: Volume, *, fractional: bool = False) -> Volume:
    """Read a DICOM SEG onto the grid of ``reference`` (the form :mod:`medseg.export` has always offered).

    ``fractional=True`` returns per-segment channels ``(S, X, Y, Z)`` (see :func:`read_seg`).
    """
    vol = read_seg(path, reference=reference, as_channels=fractional)
    if fractional and vol.kind != "probability":
        return vol.replace(array=vol.numpy().astype(np.float32), kind="probability")
    return vol


def _segments(p: Path, ds: pydicom.Dataset) -> list[dict[str, Any]]:
    items = list(ds.get("SegmentSequence") or [])
    if not items:
        raise DicomError(f"{p}: the DICOM SEG has no segments (empty SegmentSequence); re-export it")
    out = []
    for item in items:
        try:
            number = int(item.SegmentNumber)
        except (AttributeError, TypeError, ValueError) as exc:
            raise DicomError(f"{p}: a segment has no valid SegmentNumber ({exc})") from exc
        out.append(
            {
                "number": number,
                "label": str(item.get("SegmentLabel", f"segment_{number}")),
                "tracking_id": str(item.get("TrackingID", "")),
                "category": _code(item, "SegmentedPropertyCategoryCodeSequence"),
                "type": _code(item, "SegmentedPropertyTypeCodeSequence"),
            }
        )
    if len({s["number"] for s in out}) != len(out):
        raise DicomError(f"{p}: SegmentNumbers repeat ({[s['number'] for s in out]}); the SEG is malformed")
    return out


def _code(item: pydicom.Dataset, name: str) -> dict[str, str] | None:
    seq = item.get(name)
    if not seq:
        return None
    c = seq[0]
    return {k: str(c.get(k, "")) for k in ("CodeValue", "CodingSchemeDesignator", "CodeMeaning")}


def _default_values(segments: list[dict[str, Any]]) -> dict[int, int]:
    """medseg's TrackingID value when every segment has a distinct one, else the segment numbers."""
    tracked = {s["number"]: m for s in segments if (m := _TRACKING.search(s["tracking_id"]))}
    values = {n: int(m.group(1)) for n, m in tracked.items()}
    if len(values) == len(segments) and len(set(values.values())) == len(values) and min(values.values()) > 0:
        return values
    return {s["number"]: s["number"] for s in segments}


def _group(p: Path, frame: pydicom.Dataset, shared: pydicom.Dataset, name: str) -> pydicom.Dataset:
    """A functional group item of one frame (per-frame first, then shared)."""
    for src in (frame, shared):
        if name in src and src[name].value:
            return src[name].value[0]
    raise DicomError(f"{p}: SEG frames lack {name}; they cannot be placed in space")


def _frame_groups(p: Path, ds: pydicom.Dataset, numbers: set[int]) -> list[tuple[int, np.ndarray, pydicom.Dataset]]:
    """``(segment number, ImagePositionPatient (LPS mm), per-frame item)`` of every frame."""
    shared = ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else pydicom.Dataset()
    out: list[tuple[int, np.ndarray, pydicom.Dataset]] = []
    for item in ds.get("PerFrameFunctionalGroupsSequence") or []:
        try:
            number = int(_group(p, item, shared, "SegmentIdentificationSequence").ReferencedSegmentNumber)
            pos = np.array([float(v) for v in _group(p, item, shared, "PlanePositionSequence").ImagePositionPatient])
        except (AttributeError, TypeError, ValueError) as exc:
            raise DicomError(f"{p}: frame {len(out) + 1} has no usable segment number or position ({exc})") from exc
        if number not in numbers:
            raise DicomError(f"{p}: frame {len(out) + 1} belongs to segment {number}, which SegmentSequence lacks")
        out.append((number, pos, item))
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if len(out) < n:
        raise DicomError(f"{p}: {len(out)} per-frame descriptions for {n} frames; the SEG is malformed")
    if len(out) > n:  # e.g. a file cut down to its first frames: the extra descriptions have no pixels
        warnings.warn(
            f"{p}: {len(out)} per-frame descriptions but {n} frame(s) of pixels; the first {n} are used",
            InputWarning,
            stacklevel=3,
        )
    return out[:n]


def _check_sources(p: Path, ds: pydicom.Dataset, ref: Volume) -> None:
    """Frames and series references must point at instances of the reference (when it came from DICOM)."""
    have = set(ref.meta.get("sop_instance_uids") or [])
    if not have:
        return  # a NIfTI/NRRD reference: only geometry can be checked
    wanted: list[str] = []
    for s in ds.get("ReferencedSeriesSequence") or []:
        wanted += [str(i.get("ReferencedSOPInstanceUID", "")) for i in s.get("ReferencedInstanceSequence") or []]
    for item in ds.get("PerFrameFunctionalGroupsSequence") or []:
        for der in item.get("DerivationImageSequence") or []:
            wanted += [str(src.get("ReferencedSOPInstanceUID", "")) for src in der.get("SourceImageSequence") or []]
    missing = sorted({w for w in wanted if w} - have)
    if missing:
        raise DicomError(
            f"{p}: the SEG references {len(missing)} image instance(s) that are not in the reference series "
            f"{ref.meta.get('source') or ''} (e.g. {missing[0]}); give the series the SEG was made on"
        )


def _own_grid(
    p: Path, ds: pydicom.Dataset, frames: list[tuple[int, np.ndarray, pydicom.Dataset]]
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """RAS affine and shape of the SEG's own frame stack (X = columns, Y = rows, Z increasing along row × column).

    Written here rather than taken from highdicom's ``get_volume_geometry``, which refuses
    big-endian files and counts every frame description, also those without pixels.
    """
    shared = ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else pydicom.Dataset()
    first = frames[0][2] if frames else pydicom.Dataset()
    ori = np.array([float(v) for v in _group(p, first, shared, "PlaneOrientationSequence").ImageOrientationPatient])
    measures = _group(p, first, shared, "PixelMeasuresSequence")
    ps = [float(v) for v in measures.PixelSpacing]
    row, col = ori[:3], ori[3:]
    normal = np.cross(row, col)
    positions = np.array([pos for _, pos, _ in frames]) if frames else np.zeros((1, 3))
    along = positions @ normal
    origin = positions[int(np.argmin(along))]
    levels = np.unique(np.round(along - along.min(), 3))
    step = float(measures.get("SpacingBetweenSlices") or 0) or (
        float(np.diff(levels).min()) if len(levels) > 1 else 0.0
    )
    step = step or float(measures.get("SliceThickness") or 1.0)
    offsets = positions - origin
    in_plane = np.abs(np.stack([offsets @ row / ps[1], offsets @ col / ps[0]]))
    k = (along - along.min()) / step
    if in_plane.max(initial=0.0) > POSITION_TOLERANCE or np.abs(k - np.round(k)).max(initial=0.0) > POSITION_TOLERANCE:
        raise DicomError(
            f"{p}: the SEG frames do not form a regular stack of parallel slices; read it with "
            "reference=SERIES (CLI: --reference) to place them on the image series"
        )
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * ps[1], col * ps[0], normal * step, origin
    return geometry.LPS_TO_RAS @ lps, (int(ds.Columns), int(ds.Rows), int(np.round(k.max(initial=0.0))) + 1)


def _check_plane(
    p: Path, ds: pydicom.Dataset, first: Any, affine: np.ndarray, shape: tuple[int, int, int], target: str
) -> None:
    if first is None:
        return
    shared = ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else pydicom.Dataset()
    ori = np.array([float(v) for v in _group(p, first[2], shared, "PlaneOrientationSequence").ImageOrientationPatient])
    ps = [float(v) for v in _group(p, first[2], shared, "PixelMeasuresSequence").PixelSpacing]
    lps = geometry.LPS_TO_RAS @ affine
    d, sp = geometry.direction(lps), geometry.spacing(lps)
    ok = (
        np.allclose(ori[:3], d[:, 0], atol=1e-3)
        and np.allclose(ori[3:], d[:, 1], atol=1e-3)
        and np.isclose(ps[0], sp[1], rtol=1e-3)
        and np.isclose(ps[1], sp[0], rtol=1e-3)
        and (int(ds.Columns), int(ds.Rows)) == tuple(shape[:2])
    )
    if not ok:
        raise GeometryError(
            f"{p}: SEG planes (orientation {np.round(ori, 4).tolist()}, spacing {ps}, {ds.Columns}×{ds.Rows}) do "
            f"not match {target} (orientation {np.round(np.concatenate([d[:, 0], d[:, 1]]), 4).tolist()}, spacing "
            f"{[round(sp[1], 4), round(sp[0], 4)]}, {shape[0]}×{shape[1]}); give the image the SEG was made on"
        )


def _paint(
    p: Path,
    ds: pydicom.Dataset,
    frames: list[tuple[int, np.ndarray, pydicom.Dataset]],
    affine: np.ndarray,
    shape: tuple[int, int, int],
    value_of: dict[int, int],
    canvas: Canvas,
    fractional: bool,
    target: str,
) -> None:
    check_allocation(p, (len(frames), int(ds.Rows), int(ds.Columns)), 1)  # before decoding what the header claims
    try:
        with pydicom_warnings(p):
            pixels = ds.pixel_array
    except PYDICOM_ERRORS as exc:
        raise DicomError(f"{p}: the SEG's pixel data cannot be decoded ({exc})") from exc
    pixels = pixels[None] if pixels.ndim == 2 else pixels
    if pixels.shape[0] != len(frames):
        raise DicomError(f"{p}: {pixels.shape[0]} frames of pixel data for {len(frames)} frame descriptions")
    scale = float(ds.get("MaximumFractionalValue", 255) or 255) if fractional else 1.0
    inv = np.linalg.inv(geometry.LPS_TO_RAS @ affine)
    for i, (number, pos, _) in enumerate(frames):
        ijk = inv[:3, :3] @ pos + inv[:3, 3]
        k = round(float(ijk[2]))
        if max(abs(ijk[0]), abs(ijk[1]), abs(ijk[2] - k)) > POSITION_TOLERANCE or not 0 <= k < shape[2]:
            raise GeometryError(
                f"{p}: frame {i + 1} at {np.round(pos, 3).tolist()} mm (LPS) is not a slice of {target} "
                f"(voxel index {np.round(ijk, 3).tolist()}); give the image the SEG was made on"
            )
        value = value_of.get(number)
        if value is None:
            continue  # an unmapped segment
        plane = pixels[i].T
        canvas.paint(value, k, plane.astype(np.float32) / scale if fractional else plane.astype(bool))
