"""Reading DICOM RT Structure Sets (RTSTRUCT) as label Volumes on a reference series' grid.

Every wanted ROI is rasterised with the inside rule of :mod:`medseg.io.contours` (a voxel is
inside when its centre is inside or on the contour; contours of one ROI on one slice combine
by even-odd, so inner contours are holes; the standard's CLOSEDPLANAR_XOR states that same
rule explicitly, and the misspelling CLOSED_PLANAR_XOR is read as it).

Contour → slice: by the contour's ReferencedSOPInstanceUID when the reference was read from
DICOM and holds that instance, else by its position along the slice normal (the slice within
half a slice of it). Points are mapped through the inverse of the reference's affine, so
oblique and gantry-tilted series work like axial ones. Contours off every slice, contours not
lying in a slice plane, POINT/OPEN_PLANAR/OPEN_NONPLANAR contours and ROIs without contours
are reported as warnings, never dropped silently. Contours with fewer than 3 points, a
reference in another frame of reference, or no reference at all are errors.

Without ``labels`` ROI *i* (in StructureSetROISequence order) gets label value *i* + 1. With
``labels`` (see :mod:`medseg.io.roi_names`) only the matched ROIs are rasterised. Where ROIs
overlap the higher label value wins (reported); ``as_channels=True`` keeps one per channel.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from medseg.core.volume import Volume
from medseg.errors import DicomError, InputWarning
from medseg.io.clinical import (
    RTSTRUCT_SOP_CLASS,
    Canvas,
    Reference,
    describe,
    labels_for,
    malformed,
    read_dataset,
    resolve_reference,
)
from medseg.io.contours import fill_polygons, to_voxels
from medseg.io.roi_names import LabelNames

log = logging.getLogger(__name__)

__all__ = ["RTSTRUCT_SOP_CLASS", "Roi", "find_reference", "read_rtstruct", "rois"]

#: Largest spread of a contour's points along the slice normal (in slices) for it to lie in one slice plane.
PLANAR_TOLERANCE = 0.5
_CLOSED = ("CLOSED_PLANAR", "CLOSEDPLANAR_XOR", "CLOSED_PLANAR_XOR")


@dataclass(frozen=True)
class Contour:
    """One contour: its geometric type, points ``(N, 3)`` LPS mm and referenced image instance (or "")."""

    geometric_type: str
    points: np.ndarray
    sop_uid: str
    number: int


@dataclass(frozen=True)
class Roi:
    """An ROI of a structure set: number, name, display colour (RGB or None), frame of reference, contours."""

    number: int
    name: str
    color: tuple[int, int, int] | None
    frame_of_reference: str
    contours: tuple[Contour, ...]


def rois(path: str | Path, ds: pydicom.Dataset | None = None) -> list[Roi]:
    """The ROIs of an RTSTRUCT file in StructureSetROISequence order, with their contours.

    Raises:
        DicomError: not an RTSTRUCT, malformed ROI numbers or contour data (names the file and ROI).
    """
    p = Path(path)
    ds = ds if ds is not None else read_dataset(p, force=p.suffix.lower() == ".dcm")
    with malformed(p, "RT Structure Set"):
        return _rois(p, ds)


def _rois(p: Path, ds: pydicom.Dataset) -> list[Roi]:
    if str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS:
        raise DicomError(f"{p}: not an RT Structure Set (SOP class {ds.get('SOPClassUID', 'missing')})")
    contours_of: dict[int, Any] = {}
    for item in ds.get("ROIContourSequence") or []:
        try:
            contours_of[int(item.ReferencedROINumber)] = item
        except (AttributeError, TypeError, ValueError) as exc:
            raise DicomError(f"{p}: an ROIContourSequence item has no valid ReferencedROINumber ({exc})") from exc
    out = []
    for item in ds.get("StructureSetROISequence") or []:
        try:
            number = int(item.ROINumber)
        except (AttributeError, TypeError, ValueError) as exc:
            raise DicomError(f"{p}: an ROI has no valid ROINumber ({exc})") from exc
        name = str(item.get("ROIName", f"ROI {number}"))
        roi_item = contours_of.get(number)
        color = None
        if roi_item is not None and roi_item.get("ROIDisplayColor") is not None:
            rgb = [int(c) for c in roi_item.ROIDisplayColor]
            color = (rgb[0], rgb[1], rgb[2]) if len(rgb) == 3 else None
        contours = tuple(_contours(p, name, roi_item)) if roi_item is not None else ()
        out.append(Roi(number, name, color, str(item.get("ReferencedFrameOfReferenceUID", "")), contours))
    return out


def _contour_data(p: Path, name: str, c: pydicom.Dataset) -> np.ndarray:
    """``ContourData`` as ``(N, 3)``; parsed from the raw text when pydicom has not converted it yet (fast)."""
    raw = c.get_item(0x30060050) if hasattr(c, "get_item") else None
    try:
        if raw is not None and isinstance(getattr(raw, "value", None), bytes):
            values = np.array(raw.value.decode("ascii").replace("\0", " ").split("\\"), dtype=np.float64)
        else:
            values = np.array([float(v) for v in c.get("ContourData") or []], dtype=np.float64)
    except (TypeError, ValueError, UnicodeDecodeError) as exc:
        raise DicomError(f"{p}: ROI '{name}': ContourData is not a list of numbers ({exc})") from exc
    if values.size % 3 or not np.all(np.isfinite(values)):
        raise DicomError(f"{p}: ROI '{name}': ContourData holds {values.size} values, not finite (x, y, z) triplets")
    return values.reshape(-1, 3)


def _contours(p: Path, name: str, roi_item: pydicom.Dataset) -> list[Contour]:
    out = []
    for i, c in enumerate(roi_item.get("ContourSequence") or [], start=1):
        points = _contour_data(p, name, c)
        images = c.get("ContourImageSequence") or []
        sop = str(images[0].get("ReferencedSOPInstanceUID", "")) if images else ""
        number = int(c.get("ContourNumber", i) or i)
        out.append(Contour(str(c.get("ContourGeometricType", "")).upper(), points, sop, number))
    return out


def find_reference(path: Path, ds: pydicom.Dataset) -> Path | list[Path]:
    """The image series an RTSTRUCT/SEG references, searched beside it (its folder, then the folder above).

    Raises:
        DicomError: not found (says what to give instead).
    """
    from medseg.io.dicom import find_series

    obj = describe(path, ds)
    wanted = set(obj.referenced_series) if obj else set()
    instances = set(obj.referenced_instances) if obj else set()
    for folder in dict.fromkeys([path.parent, path.parent.parent]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputWarning)  # unrelated files there are not this read's business
            try:
                series = [s for s in find_series(folder) if s.is_image]
            except DicomError:
                continue
        for s in series:
            if s.uid in wanted or (instances and instances & set(_sop_uids(s.files))):
                return list(s.files)
    uids = ", ".join(sorted(wanted)) or "none recorded"
    raise DicomError(
        f"{path}: an RT Structure Set (contours, not an image) needs the image series it was drawn on (SeriesInstanceUID {uids}); it was "
        f"not given and is not in {path.parent} or the folder above: give it with reference=SERIES (CLI: --reference DIR)"
    )


def _sop_uids(files: tuple[Path, ...]) -> list[str]:
    return [
        str(pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID) for f in files
    ]


def read_rtstruct(
    path: str | Path,
    *,
    reference: Reference | None = None,
    labels: LabelNames | None = None,
    as_channels: bool = False,
) -> Volume:
    """Rasterise an RTSTRUCT's ROIs onto its reference series' grid.

    Args:
        path: the RTSTRUCT file.
        reference: the image series it was drawn on (Volume, DICOM folder/files, or any image on
            that grid). Without it the referenced series is searched beside the file.
        labels: ``{value: [name, synonym, pattern, ...]}``; only matched ROIs are rasterised.
        as_channels: one uint8 0/1 channel per label (label-value order) instead of a label map.

    Returns:
        ``(1, X, Y, Z)`` label map (uint8, uint16 above 255) on the reference's grid, or
        ``(R, X, Y, Z)`` channels. ``meta``: ``labels``, ``rois`` (number, name, value, colour,
        contours rasterised, skipped), ``unmapped``, ``overlap_voxels``, UIDs.

    Raises:
        DicomError: not an RTSTRUCT; no reference given or found; another frame of reference;
            a contour with fewer than 3 points; an ambiguous label.
    """
    p = Path(path)
    ds = read_dataset(p, force=p.suffix.lower() == ".dcm")
    all_rois = rois(p, ds)
    with malformed(p, "RT Structure Set"):
        return _read_rtstruct(p, ds, all_rois, reference, labels, as_channels)


def _read_rtstruct(
    p: Path,
    ds: pydicom.Dataset,
    all_rois: list[Roi],
    reference: Reference | None,
    labels: LabelNames | None,
    as_channels: bool,
) -> Volume:
    if reference is None:
        reference = find_reference(p, ds)
    ref = resolve_reference(reference, p)
    by_index, unmapped = labels_for(p, [r.name for r in all_rois], labels, "ROI")
    wanted = {v: all_rois[i] for i, v in sorted(by_index.items(), key=lambda t: t[1])}
    names = {v: (labels[v][0] if labels is not None else r.name) for v, r in wanted.items()}
    _check_frame_of_reference(p, ds, list(wanted.values()), ref)
    canvas = Canvas(p, ref.spatial_shape, list(wanted), as_channels=as_channels)
    slice_of = {uid: k for k, uid in enumerate(ref.meta.get("sop_instance_uids") or [])}
    if ref.meta.get("frame_indices") and any(i is not None for i in ref.meta["frame_indices"]):
        slice_of = {}  # one multi-frame file: the instance UID does not tell the slice
    info = []
    for value, roi in wanted.items():
        planes, stats = _rasterise(p, roi, ref, slice_of)
        for k, plane in planes.items():
            canvas.paint(value, k, plane)
        info.append({"number": roi.number, "name": roi.name, "value": value, "color": roi.color, **stats})
    obj = describe(p, ds)
    meta: dict[str, Any] = {
        "source": str(p),
        "format": "dicom-rtstruct",
        "labels": dict(sorted(names.items())),
        "rois": info,
        "unmapped": unmapped,
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "referenced_series_uids": list(obj.referenced_series) if obj else [],
        "frame_of_reference_uid": str(ref.meta.get("frame_of_reference_uid", "")),
        "reference": ref.meta.get("source"),
    }
    if as_channels:
        meta["channels"] = [names[v] for v in canvas.values]
    else:
        meta["overlap_voxels"] = canvas.report_overlaps(p, names, "ROI")
    return Volume(canvas.array, ref.affine, kind="label", meta=meta)


def _check_frame_of_reference(p: Path, ds: pydicom.Dataset, wanted: list[Roi], ref: Volume) -> None:
    have = str(ref.meta.get("frame_of_reference_uid", "") or "")
    if not have:
        return  # a NIfTI/NRRD reference carries no frame of reference: geometry decides
    drawn = {r.frame_of_reference for r in wanted if r.frame_of_reference}
    if not drawn:
        drawn = {str(f.get("FrameOfReferenceUID", "")) for f in ds.get("ReferencedFrameOfReferenceSequence") or []}
        drawn.discard("")
    if drawn and have not in drawn:
        raise DicomError(
            f"{p}: drawn in frame of reference {', '.join(sorted(drawn))}, but the reference series "
            f"{ref.meta.get('source') or ''} is in {have}; give the series the structures were drawn on"
        )


def _rasterise(
    p: Path, roi: Roi, ref: Volume, slice_of: dict[str, int]
) -> tuple[dict[int, np.ndarray], dict[str, int]]:
    """Per-slice masks ``{k: (X, Y) bool}`` of one ROI, and counts of what was used and skipped."""
    nx, ny, nz = ref.spatial_shape
    by_slice: dict[int, list[np.ndarray]] = defaultdict(list)
    skipped: dict[str, int] = defaultdict(int)
    off: list[float] = []
    for c in roi.contours:
        if c.geometric_type not in _CLOSED:
            skipped[c.geometric_type or "untyped"] += 1
            continue
        if len(c.points) < 3:
            raise DicomError(
                f"{p}: ROI '{roi.name}' contour {c.number} has {len(c.points)} point(s); a closed contour needs at "
                "least 3 (fix it in the planning system, or leave this ROI out of input.labels)"
            )
        uvw = to_voxels(c.points, ref.affine)
        w = uvw[:, 2]
        k = slice_of.get(c.sop_uid)
        if k is None:
            k = int(np.floor(float(w.mean()) + 0.5))
            if not 0 <= k < nz:
                off.append(float(w.mean()))
                continue
        elif abs(float(w.mean()) - k) > 0.5:
            warnings.warn(
                f"{p}: ROI '{roi.name}' contour {c.number} references slice {k} but lies {float(w.mean()) - k:+.2f} "
                "slices from it; drawn on the referenced slice",
                InputWarning,
                stacklevel=4,
            )
        if float(np.ptp(w)) > PLANAR_TOLERANCE:
            skipped["not in a slice plane"] += 1
            continue
        by_slice[k].append(uvw[:, :2])
    _report(p, roi, skipped, off, nz)
    planes = {k: fill_polygons(polys, (nx, ny)) for k, polys in by_slice.items()}
    used = sum(len(v) for v in by_slice.values())
    return planes, {"contours": used, "skipped": sum(skipped.values()) + len(off)}


def _report(p: Path, roi: Roi, skipped: dict[str, int], off: list[float], nz: int) -> None:
    if not roi.contours:
        warnings.warn(f"{p}: ROI '{roi.name}' has no contours; its label stays empty", InputWarning, stacklevel=5)
    if skipped:
        kinds = ", ".join(f"{n} {t}" for t, n in sorted(skipped.items()))
        warnings.warn(
            f"{p}: ROI '{roi.name}': skipped {kinds} contour(s) (only closed planar contours on the series' "
            "slices make a mask)",
            InputWarning,
            stacklevel=5,
        )
    if off:
        warnings.warn(
            f"{p}: ROI '{roi.name}': {len(off)} contour(s) lie off every slice of the reference (at slice "
            f"positions {min(off):.1f} to {max(off):.1f}, the series spans 0 to {nz - 1}); they were not "
            "rasterised: is this the series the structures were drawn on?",
            InputWarning,
            stacklevel=5,
        )
