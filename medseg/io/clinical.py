"""DICOM label objects (SEG and RTSTRUCT): what they are, what they reference, and painting them on a grid.

Shared by :mod:`medseg.io.seg`, :mod:`medseg.io.rtstruct`, :func:`medseg.io.find_series`
and the training loaders. Where the labels of several segments/ROIs overlap in a label
map, the **higher label value wins**, and the overlap is reported (warning + ``meta``);
``as_channels=True`` keeps one channel per label instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom

from medseg.core.volume import Volume
from medseg.errors import DicomError, InputWarning
from medseg.io.checks import check_allocation
from medseg.io.dicom_pixels import PYDICOM_ERRORS, pydicom_warnings
from medseg.io.roi_names import LabelNames, match_names

log = logging.getLogger(__name__)

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
LABEL_SOP_CLASSES = {SEG_SOP_CLASS: "seg", RTSTRUCT_SOP_CLASS: "rtstruct"}

Reference = Volume | str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


@dataclass(frozen=True)
class LabelObject:
    """A DICOM SEG or RTSTRUCT file, described from its header.

    Attributes:
        path: the file.
        kind: ``"seg"`` or ``"rtstruct"``.
        sop_uid, series_uid, study_uid, patient_id: its own identifiers.
        frames_of_reference: FrameOfReferenceUIDs it is drawn in.
        referenced_series: SeriesInstanceUIDs of the image series it references.
        referenced_instances: SOPInstanceUIDs of the referenced images (slices).
        names: ROI names (RTSTRUCT) or segment labels (SEG), in file order.
        empty: the names of ROIs without contours / segments without frames.
    """

    path: Path
    kind: Literal["seg", "rtstruct"]
    sop_uid: str
    series_uid: str
    study_uid: str
    patient_id: str
    frames_of_reference: tuple[str, ...]
    referenced_series: tuple[str, ...]
    referenced_instances: tuple[str, ...]
    names: tuple[str, ...]
    empty: tuple[str, ...] = ()


def label_kind(ds: pydicom.Dataset) -> str | None:
    """``"seg"``, ``"rtstruct"`` or None, from the SOP class (None also when the tag is damaged)."""
    try:
        return LABEL_SOP_CLASSES.get(str(ds.get("SOPClassUID", "")))
    except PYDICOM_ERRORS:
        return None


def _items(ds: pydicom.Dataset | None, name: str) -> list[pydicom.Dataset]:
    if ds is None or name not in ds or ds[name].value is None:
        return []
    return list(ds[name].value)


def describe(path: Path, ds: pydicom.Dataset) -> LabelObject | None:
    """The :class:`LabelObject` of a parsed header, or None when it is neither SEG nor RTSTRUCT.

    Raises:
        DicomError: a SEG/RTSTRUCT whose reference tags are damaged.
    """
    kind = label_kind(ds)
    if kind is None:
        return None
    with malformed(path, "DICOM SEG/RTSTRUCT header"):
        return _describe(path, ds, kind)


def _describe(path: Path, ds: pydicom.Dataset, kind: str) -> LabelObject:
    series: list[str] = []
    instances: list[str] = []
    if kind == "rtstruct":
        fors = [str(f.get("FrameOfReferenceUID", "")) for f in _items(ds, "ReferencedFrameOfReferenceSequence")]
        for f in _items(ds, "ReferencedFrameOfReferenceSequence"):
            for study in _items(f, "RTReferencedStudySequence"):
                for s in _items(study, "RTReferencedSeriesSequence"):
                    series.append(str(s.get("SeriesInstanceUID", "")))
                    instances += [str(i.get("ReferencedSOPInstanceUID", "")) for i in _items(s, "ContourImageSequence")]
        if not instances:  # the structure-set level list is optional (type 3): collect from the contours
            for roi in _items(ds, "ROIContourSequence"):
                for c in _items(roi, "ContourSequence"):
                    instances += [str(i.get("ReferencedSOPInstanceUID", "")) for i in _items(c, "ContourImageSequence")]
        fors += [str(r.get("ReferencedFrameOfReferenceUID", "")) for r in _items(ds, "StructureSetROISequence")]
        names = [str(r.get("ROIName", "")) for r in _items(ds, "StructureSetROISequence")]
        drawn = {
            str(r.get("ReferencedROINumber", "")) for r in _items(ds, "ROIContourSequence") if r.get("ContourSequence")
        }
        empty = [
            str(r.get("ROIName", ""))
            for r in _items(ds, "StructureSetROISequence")
            if str(r.get("ROINumber", "")) not in drawn
        ]
    else:
        fors = [str(ds.get("FrameOfReferenceUID", ""))]
        for s in _items(ds, "ReferencedSeriesSequence"):
            series.append(str(s.get("SeriesInstanceUID", "")))
            instances += [str(i.get("ReferencedSOPInstanceUID", "")) for i in _items(s, "ReferencedInstanceSequence")]
        names = [str(s.get("SegmentLabel", "")) for s in _items(ds, "SegmentSequence")]
        shared = _items(ds, "SharedFunctionalGroupsSequence")[:1]
        framed = set()
        for item in _items(ds, "PerFrameFunctionalGroupsSequence"):
            ident = _items(item, "SegmentIdentificationSequence") or _items(
                shared[0] if shared else None, "SegmentIdentificationSequence"
            )
            framed |= {str(i.get("ReferencedSegmentNumber", "")) for i in ident}
        empty = [
            str(s.get("SegmentLabel", ""))
            for s in _items(ds, "SegmentSequence")
            if str(s.get("SegmentNumber", "")) not in framed
        ]
    return LabelObject(
        path=path,
        kind=kind,  # type: ignore[arg-type]
        sop_uid=str(ds.get("SOPInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        study_uid=str(ds.get("StudyInstanceUID", "")),
        patient_id=str(ds.get("PatientID", "")),
        frames_of_reference=tuple(dict.fromkeys(f for f in fors if f)),
        referenced_series=tuple(dict.fromkeys(s for s in series if s)),
        referenced_instances=tuple(dict.fromkeys(i for i in instances if i)),
        names=tuple(names),
        empty=tuple(empty),
    )


def read_dataset(path: str | os.PathLike[str], *, force: bool = False, pixels: bool = False) -> pydicom.Dataset:
    """The parsed file (header only unless ``pixels``); ``force`` also reads files without the ``DICM`` preamble.

    Raises:
        DicomError: unreadable file (names it).
    """
    p = Path(path)
    try:
        with pydicom_warnings(p):
            return pydicom.dcmread(p, stop_before_pixels=not pixels, force=force)
    except PYDICOM_ERRORS as exc:
        raise DicomError(f"{p}: not a readable DICOM file ({type(exc).__name__}: {exc})") from exc


@contextlib.contextmanager
def malformed(path: Path, what: str) -> Iterator[None]:
    """Turn what pydicom raises on damaged tags (missing, wrong type, bad values) into one DicomError line,
    and its complaints about odd values into one InputWarning naming the file."""
    try:
        with pydicom_warnings(path):
            yield
    except PYDICOM_ERRORS as exc:
        raise DicomError(f"{path}: malformed {what} ({type(exc).__name__}: {exc}); re-export it") from exc


def file_label_kind(path: str | os.PathLike[str], *, force: bool = False) -> str | None:
    """``"seg"`` or ``"rtstruct"`` when ``path`` is such a file, else None (also for unreadable files)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)  # odd values: the reader that follows reports them
        try:
            ds = read_dataset(path, force=force)
            with pydicom_warnings(Path(path)):
                return label_kind(ds)
        except DicomError:
            return None


def label_object(path: str | os.PathLike[str], *, force: bool = False) -> LabelObject | None:
    """Describe ``path`` when it is a DICOM SEG or RTSTRUCT file, else None (also for unreadable files).

    Raises:
        DicomError: a SEG/RTSTRUCT whose reference tags are damaged.
    """
    try:
        ds = read_dataset(path, force=force)
    except DicomError:
        return None
    return describe(Path(path), ds)


def resolve_reference(reference: Reference, what: Path) -> Volume:
    """The reference image as a Volume (read when it is a path, a DICOM folder or a list of files)."""
    if isinstance(reference, Volume):
        return reference
    from medseg.io import read

    ref = read(reference)  # type: ignore[arg-type]
    log.debug("%s: reference %s read", what, ref.meta.get("source"))
    return ref


def labels_for(
    path: Path, names: Sequence[str], labels: LabelNames | None, what: str
) -> tuple[dict[int, int], list[str]]:
    """Map ROI/segment ``names`` (by index) to label values; returns ``(value of index, unmapped names)``.

    Without ``labels`` every name gets ``index + 1``. With them, :func:`match_names` decides;
    missing labels are warned about, unmapped names logged and returned.

    Raises:
        DicomError: a label is ambiguous (names the file, the label and the competing names).
    """
    if labels is None:
        return {i: i + 1 for i in range(len(names))}, []
    m = match_names(names, labels)
    if m.ambiguous:
        problems = [p for p in m.problems(labels) if "ambiguous" in p]
        raise DicomError(f"{path}: {'; '.join(problems)}; list the exact {what} name first in input.labels")
    if m.missing:
        warnings.warn(
            f"{path}: {'; '.join(p for p in m.problems(labels) if 'ambiguous' not in p)} "
            f"(its {what}s: {', '.join(repr(n) for n in names) or 'none'})",
            InputWarning,
            stacklevel=3,
        )
    if m.unmapped:
        log.info("%s: %ss not in the labels: %s", path, what, ", ".join(m.unmapped))
    return {i: v for v, i in m.index_of.items()}, m.unmapped


class Canvas:
    """Paints per-slice masks of labelled objects onto a grid: a label map, or one channel per label.

    Args:
        shape: ``(X, Y, Z)``.
        values: the label values that will be painted (channel order when ``as_channels``).
        as_channels: keep one channel per value instead of a label map.
        fractional: channels hold fractions 0..1 (float32) instead of 0/1 (uint8).
    """

    def __init__(
        self,
        where: Path,
        shape: tuple[int, int, int],
        values: Sequence[int],
        *,
        as_channels: bool,
        fractional: bool = False,
    ) -> None:
        self.values = sorted(set(values))
        self.as_channels = as_channels
        if as_channels:
            full = (max(len(self.values), 1), *shape)
            dtype: type = np.float32 if fractional else np.uint8
        else:
            full, dtype = (1, *shape), np.uint8 if max(self.values, default=0) < 256 else np.uint16
        check_allocation(where, full, np.dtype(dtype).itemsize)
        self.array: np.ndarray = np.zeros(full, dtype=dtype)
        self.channel = {v: i for i, v in enumerate(self.values)}
        self.overlaps: dict[tuple[int, int], int] = {}

    def paint(self, value: int, k: int, plane: np.ndarray) -> None:
        """Add ``plane`` ``(X, Y)`` (bool, or fractions 0..1) of label ``value`` on slice ``k``."""
        if self.as_channels:
            target = self.array[self.channel[value], :, :, k]
            np.maximum(target, plane.astype(target.dtype), out=target)
            return
        mask = plane >= 0.5 if plane.dtype.kind == "f" else plane.astype(bool)
        target = self.array[0, :, :, k]
        under = target[mask]
        other = under[(under != 0) & (under != value)]
        for w, n in zip(*np.unique(other, return_counts=True)):
            key = (min(int(w), value), max(int(w), value))
            self.overlaps[key] = self.overlaps.get(key, 0) + int(n)
        target[mask] = np.maximum(under, value)  # the higher label value wins

    def report_overlaps(self, path: Path, names: dict[int, str], what: str) -> int:
        """Warn once about overlapping labels (label maps only); returns the overlapping voxel count."""
        if not self.overlaps:
            return 0
        pairs = ", ".join(
            f"{names.get(a, a)!r}/{names.get(b, b)!r} ({n} voxels)" for (a, b), n in self.overlaps.items()
        )
        warnings.warn(
            f"{path}: {what}s overlap: {pairs}; the higher label value is kept there "
            "(read with as_channels=True to keep each separately)",
            InputWarning,
            stacklevel=3,
        )
        return sum(self.overlaps.values())
