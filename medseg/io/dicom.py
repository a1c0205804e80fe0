"""DICOM series discovery and reading with pydicom.

Geometry follows the standard, not the convenience tags: slices are sorted by
their position along the slice normal (``ImageOrientationPatient`` row × column),
spacing between slices comes from ``ImagePositionPatient`` (never from
``SliceThickness``/``SpacingBetweenSlices``), and the affine's third column is the
measured step between slices, so gantry tilt gives an honest sheared affine.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from medseg.core import geometry
from medseg.core.volume import Volume
from medseg.errors import DicomError, InputWarning
from medseg.io.checks import check_allocation
from medseg.io.clinical import describe as describe_label_object
from medseg.io.dicom_pixels import PYDICOM_ERRORS
from medseg.io.dicom_pixels import decode as _decode
from medseg.io.dicom_pixels import pydicom_warnings as _pydicom_warnings

log = logging.getLogger(__name__)

#: SOP classes that carry no image to segment, with a readable name for errors.
NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.481.3": "an RT Structure Set (RTSTRUCT)",
    "1.2.840.10008.5.1.4.1.1.66.4": "a Segmentation (SEG)",
    "1.2.840.10008.5.1.4.1.1.11.1": "a Presentation State",
    "1.2.840.10008.5.1.4.1.1.104.1": "an Encapsulated PDF",
    "1.2.840.10008.5.1.4.1.1.481.5": "an RT Plan",
}
#: Largest deviation of a slice gap from the series' median gap, as a fraction (0.05 = 5 %); larger gaps
#: (missing slices) are errors unless the caller allows more (read(..., spacing_tolerance=...)).
SPACING_TOLERANCE = 0.05
#: Tags read by :func:`find_series`/:func:`read_dicom`; decoded up front so bad values fail per file.
_USED_TAGS = (
    "SeriesInstanceUID",
    "SOPClassUID",
    "SOPInstanceUID",
    "Modality",
    "SeriesDescription",
    "StudyInstanceUID",
    "FrameOfReferenceUID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "RescaleSlope",
    "RescaleIntercept",
    "SliceThickness",
    "SpacingBetweenSlices",
)
_INT_TAGS = ("Rows", "Columns", "SamplesPerPixel", "NumberOfFrames")


@dataclass(frozen=True)
class SeriesInfo:
    """A series found in a folder tree (see :func:`find_series`).

    Attributes:
        uid: SeriesInstanceUID.
        modality: e.g. ``"CT"``, ``"MR"``, ``"SEG"``.
        description: SeriesDescription (may be empty).
        n_slices: number of slices (frames for multi-frame files).
        size: ``(X, Y, Z)`` = (columns, rows, slices).
        spacing: ``(X, Y, Z)`` mm from PixelSpacing and slice positions, or None if unknown.
        orientation: axis codes of the RAS affine (e.g. ``"LPS"``) or None.
        files: the files of the series.
        is_image: False for SR, RTSTRUCT, SEG and other non-image objects.
        kind: SOP class name (e.g. ``"CT Image Storage"``).
        references: for RTSTRUCT and SEG, the SeriesInstanceUIDs of the image series they reference.
        names: for RTSTRUCT and SEG, the ROI names or segment labels.
        affine: 4×4 voxel → RAS mm of the series as :func:`read_dicom` reads it, or None.
    """

    uid: str
    modality: str
    description: str
    n_slices: int
    size: tuple[int, int, int]
    spacing: tuple[float, float, float] | None
    orientation: str | None
    files: tuple[Path, ...]
    is_image: bool
    kind: str
    references: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    affine: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: the parsed headers, so reading the series does not parse them again
    headers: tuple[tuple[Path, pydicom.Dataset], ...] = field(default=(), repr=False, compare=False)

    def summary(self) -> str:
        """One line: UID, modality, description, slices, size (RTSTRUCT/SEG: what they reference)."""
        desc = f" '{self.description}'" if self.description else ""
        if self.references or self.names:
            refs = ", ".join(self.references) or "no series recorded"
            return f"{self.uid} {self.modality}{desc}: {len(self.names)} ROI/segment(s) on series {refs}"
        return f"{self.uid} {self.modality}{desc}: {self.n_slices} slices of {self.size[0]}×{self.size[1]}"


@dataclass
class _Frame:
    position: np.ndarray  # ImagePositionPatient (LPS mm)
    orientation: np.ndarray  # ImageOrientationPatient, 6 values
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    slope: float
    intercept: float
    file: Path
    index: int | None  # frame number (0-based) in a multi-frame file
    sop_uid: str


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` starts with the DICOM preamble magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _dicom_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(f for f in sorted(p.rglob("*")) if f.is_file() and f.name.upper() != "DICOMDIR")
        else:
            files.append(p)
    return [f for f in files if is_dicom_file(f)]


def _check_header(ds: pydicom.Dataset) -> None:
    """Decode the tags medseg uses; malformed values raise here, once per file."""
    for name in _USED_TAGS:
        ds.get(name)
    for name in _INT_TAGS:
        value = ds.get(name)
        if value is None or (value == "" and name == "NumberOfFrames"):
            continue
        if int(value) < 0:  # an empty or non-numeric value raises ValueError/TypeError here
            raise ValueError(f"{name} is negative ({value})")
    if "NumberOfFrames" in ds and ds.NumberOfFrames not in (None, ""):
        ds.NumberOfFrames = int(ds.NumberOfFrames)


def _read_headers(files: Sequence[Path], skipped: list[str] | None = None) -> list[tuple[Path, pydicom.Dataset]]:
    out = []
    for f in files:
        try:
            with _pydicom_warnings(f):
                ds = pydicom.dcmread(f, stop_before_pixels=True)
                _check_header(ds)
        except PYDICOM_ERRORS as exc:
            warnings.warn(f"{f}: skipped, not a readable DICOM file ({exc})", InputWarning, stacklevel=3)
            if skipped is not None:
                skipped.append(f"{f} ({exc})")
            continue
        out.append((f, ds))
    return out


def _group(headers: list[tuple[Path, pydicom.Dataset]]) -> dict[str, list[tuple[Path, pydicom.Dataset]]]:
    groups: dict[str, list[tuple[Path, pydicom.Dataset]]] = defaultdict(list)
    for f, ds in headers:
        groups[str(ds.get("SeriesInstanceUID", "unknown"))].append((f, ds))
    return groups


def _sop_class(ds: pydicom.Dataset) -> tuple[str, str]:
    uid = ds.get("SOPClassUID")
    if uid is None:
        return "", "unknown SOP class"
    return str(uid), getattr(uid, "name", str(uid))


def _is_image(ds: pydicom.Dataset) -> bool:
    uid = _sop_class(ds)[0]
    if uid in NON_IMAGE_SOP_CLASSES or ".88." in uid:  # 1.2.840.10008.5.1.4.1.1.88.x = Structured Reports
        return False
    return "Rows" in ds and "Columns" in ds


def _what(ds: pydicom.Dataset) -> str:
    uid, name = _sop_class(ds)
    if ".88." in uid:
        return "a Structured Report (SR)"
    return NON_IMAGE_SOP_CLASSES.get(uid, f"a '{name}' object without pixel data")


#: Largest coordinate or voxel size (mm) taken as real; beyond it a header value is corrupt.
_MAX_MM = 1e6


def _float_list(value: Any, n: int, what: str, f: Path) -> np.ndarray:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DicomError(f"{f}: {what} is not numeric ({value!r})") from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)) or np.abs(arr).max(initial=0.0) > _MAX_MM:
        raise DicomError(f"{f}: {what} must hold {n} finite numbers (|x| ≤ {_MAX_MM:g} mm), got {value!r}")
    if what == "PixelSpacing" and arr.min() <= 0:
        raise DicomError(
            f"{f}: PixelSpacing must be > 0 mm, got {value!r}; the header is corrupt: re-export the series, or "
            'set the true spacing (e.g. dcmodify -m "(0028,0030)=0.7\\\\0.7")'
        )
    if what == "ImageOrientationPatient":
        row, col = arr[:3], arr[3:]
        if abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(col) - 1) > 1e-2 or abs(row @ col) > 1e-2:
            raise DicomError(
                f"{f}: ImageOrientationPatient {value!r} is not two orthogonal unit vectors; the header is corrupt"
            )
    return arr


def _scalar(value: Any, default: float, what: str, f: Path) -> float:
    """A single finite number from an optional tag (``None``/empty → ``default``)."""
    if value is None or value == "":
        return default
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise DicomError(f"{f}: {what} is not a single number ({value!r})") from exc
    if not np.isfinite(out) or abs(out) > 1e12:
        raise DicomError(f"{f}: {what} must be a finite number, got {value!r}")
    return out


def _frames(f: Path, ds: pydicom.Dataset, lone: bool = False) -> list[_Frame]:
    """Geometry of every frame of one file (classic single-frame or enhanced multi-frame).

    ``lone``: the file is a series on its own; a missing position/orientation then
    gives identity geometry with a warning instead of an error (secondary captures).
    """
    sop = str(ds.get("SOPInstanceUID", f.name))
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if "PerFrameFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else pydicom.Dataset()
        frames = []
        for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):

            def group(name: str, item: pydicom.Dataset = item) -> pydicom.Dataset | None:
                for src in (item, shared):
                    if name in src and len(src[name].value):
                        return src[name].value[0]
                return None

            pos, ori, meas, pvt = (
                group(n)
                for n in (
                    "PlanePositionSequence",
                    "PlaneOrientationSequence",
                    "PixelMeasuresSequence",
                    "PixelValueTransformationSequence",
                )
            )
            if pos is None or ori is None or meas is None:
                raise DicomError(
                    f"{f}: multi-frame file lacks plane position/orientation/pixel measures for frame {i + 1}"
                )
            frames.append(
                _Frame(
                    _float_list(pos.ImagePositionPatient, 3, "ImagePositionPatient", f),
                    _float_list(ori.ImageOrientationPatient, 6, "ImageOrientationPatient", f),
                    tuple(_float_list(meas.PixelSpacing, 2, "PixelSpacing", f)),  # type: ignore[arg-type]
                    _scalar((pvt if pvt is not None else ds).get("RescaleSlope"), 1.0, "RescaleSlope", f),
                    _scalar((pvt if pvt is not None else ds).get("RescaleIntercept"), 0.0, "RescaleIntercept", f),
                    f,
                    i,
                    sop,
                )
            )
        return frames
    if n_frames > 1 and not lone:
        raise DicomError(
            f"{f}: multi-frame file without per-frame geometry (functional groups) in a series of several files; "
            "its frames cannot be placed among the others: move it to a folder of its own"
        )
    position = ds.get("ImagePositionPatient")
    orientation = ds.get("ImageOrientationPatient")
    missing = [t for t in ("ImagePositionPatient", "ImageOrientationPatient") if t not in ds]
    if missing and not lone:
        raise DicomError(
            f"{f}: missing {', '.join(missing)}; the slice cannot be placed in space "
            "(secondary capture, or anonymised too far?): move it out of the series folder"
        )
    # a file that is a series on its own is read even without geometry, multi-frame or not: placed at the
    # origin with identity orientation (and frames one slice thickness apart), with a warning saying so
    placed = [] if not missing else [f"no {' or '.join(missing)}: placed at the origin with identity orientation"]
    if missing:
        position, orientation = [0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ps = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing") or [1.0, 1.0]
    slope = _scalar(ds.get("RescaleSlope", 1.0), 1.0, "RescaleSlope", f)
    inter = _scalar(ds.get("RescaleIntercept", 0.0), 0.0, "RescaleIntercept", f)
    pos = _float_list(position, 3, "ImagePositionPatient", f)
    ori = _float_list(orientation, 6, "ImageOrientationPatient", f)
    spacing = tuple(_float_list(ps, 2, "PixelSpacing", f))
    step = 0.0
    if n_frames > 1:
        step = _scalar(ds.get("SpacingBetweenSlices") or ds.get("SliceThickness"), 1.0, "SliceThickness", f)
        step = step if 0 < step <= _MAX_MM else 1.0
        placed.append(
            f"multi-frame file without per-frame geometry (functional groups): its {n_frames} frames are placed "
            f"{step:g} mm apart along the slice normal"
        )
    if placed:
        warnings.warn(f"{f}: {'; '.join(placed)}", InputWarning, stacklevel=3)
    normal = np.cross(ori[:3], ori[3:])
    return [
        _Frame(pos + normal * step * k, ori, spacing, slope, inter, f, k if n_frames > 1 else None, sop)  # type: ignore[arg-type]
        for k in range(n_frames)
    ]


def _sorted_geometry(
    where: str, frames: list[_Frame], headers: dict[Path, pydicom.Dataset], spacing_tolerance: float
) -> tuple[list[_Frame], np.ndarray]:
    """Sort frames along the slice normal, check consistency, return (frames, LPS affine)."""
    ori0 = frames[0].orientation
    for fr in frames[1:]:
        if np.abs(fr.orientation - ori0).max() > 1e-3:
            raise DicomError(
                f"{where}: mixed orientations in one series ({fr.file.name} has ImageOrientationPatient "
                f"{np.round(fr.orientation, 4).tolist()} vs {np.round(ori0, 4).tolist()}); localizers or "
                "reformats are mixed in: move them to another folder or choose a series"
            )
    for fr in frames:
        if "Rows" not in headers[fr.file] or "Columns" not in headers[fr.file]:
            raise DicomError(f"{fr.file}: no Rows/Columns in the header; the slice is damaged, remove or re-export it")
    sizes = {(int(headers[fr.file].Rows), int(headers[fr.file].Columns)) for fr in frames}
    if len(sizes) > 1:
        raise DicomError(f"{where}: slices of different sizes in one series ({sorted(sizes)}); choose a single series")
    spacings = {fr.pixel_spacing for fr in frames}
    if len(spacings) > 1:
        raise DicomError(f"{where}: slices with different PixelSpacing in one series ({sorted(spacings)})")
    row, col = ori0[:3], ori0[3:]
    normal = np.cross(row, col)
    dist = np.array([float(fr.position @ normal) for fr in frames])
    order = np.argsort(dist, kind="stable")
    frames = [frames[i] for i in order]
    dist = dist[order]
    ps = frames[0].pixel_spacing
    n = len(frames)
    if n > 1:
        gaps = np.diff(dist)
        dup = np.flatnonzero(gaps < 1e-3)
        if dup.size:
            a, b = frames[dup[0]], frames[dup[0] + 1]
            raise DicomError(
                f"{where}: {dup.size + 1} slices share a position (e.g. {a.file.name} and {b.file.name} at "
                f"{dist[dup[0]]:.3f} mm along the normal); the series holds several acquisitions "
                "(echoes, phases, time points): split them into separate folders"
            )
        step_mm = float(np.median(gaps))
        bad = np.flatnonzero(np.abs(gaps - step_mm) > spacing_tolerance * step_mm)
        if bad.size:
            i = int(bad[0])
            raise DicomError(
                f"{where}: uneven slice spacing: {gaps[i]:.3f} mm between {frames[i].file.name} and "
                f"{frames[i + 1].file.name} where the series spacing is {step_mm:.3f} mm "
                f"({bad.size} irregular gap(s); missing slices?); complete the series, or allow it with "
                f"--spacing-tolerance {max(0.1, round(float(abs(gaps[i] - step_mm) / step_mm) + 0.01, 2))} (pipeline "
                f"files: input.spacing_tolerance; Python: read(..., spacing_tolerance=...); now {spacing_tolerance})"
            )
        step = (frames[-1].position - frames[0].position) / (n - 1)
        along = float(step @ normal)
        tilted = np.linalg.norm(step - along * normal) > 1e-3 * along  # > ~0.06°: real gantry tilt
        if tilted:
            warnings.warn(
                f"{where}: slices are offset in-plane (gantry tilt); the affine is sheared to keep positions exact",
                InputWarning,
                stacklevel=4,
            )
        else:  # rounding jitter in the positions: keep the axes orthogonal, as ITK and dcm2niix do
            step = normal * along
    else:
        ds = headers[frames[0].file]
        thick = _scalar(
            ds.get("SpacingBetweenSlices") or ds.get("SliceThickness"), 1.0, "SliceThickness", frames[0].file
        )
        thick = thick if 0 < thick <= _MAX_MM else 1.0  # a single slice: thickness only sets the voxel size
        step = normal * thick
    lps = np.eye(4)
    lps[:3, 0] = row * ps[1]
    lps[:3, 1] = col * ps[0]
    lps[:3, 2] = step
    lps[:3, 3] = frames[0].position
    return frames, lps


def find_series(folder: str | Path | Sequence[str | Path]) -> list[SeriesInfo]:
    """List every DICOM series in a folder tree (or list of files), largest first.

    Raises:
        DicomError: nothing DICOM was found.
    """
    paths = [Path(folder)] if isinstance(folder, (str, Path)) else [Path(p) for p in folder]
    for p in paths:
        if not p.exists():
            raise DicomError(f"{p}: no such file or folder")
    skipped: list[str] = []
    headers = _read_headers(_dicom_files(paths), skipped)
    if not headers and skipped:
        raise DicomError(
            f"{', '.join(map(str, paths))}: {len(skipped)} DICOM file(s) found but none is readable "
            f"(first: {skipped[0]}); re-export or re-copy the files"
        )
    if not headers:
        raise DicomError(
            f"{', '.join(map(str, paths))}: no DICOM files found (files need the 'DICM' preamble; zip archives must be unpacked first)"
        )
    out = []
    for uid, items in _group(headers).items():
        ds0 = items[0][1]
        is_image = _is_image(ds0)
        n = sum(int(ds.get("NumberOfFrames", 1) or 1) for _, ds in items)
        size = (int(ds0.get("Columns", 0)), int(ds0.get("Rows", 0)), n)
        sp: tuple[float, float, float] | None = None
        orient: str | None = None
        ras: np.ndarray | None = None
        if is_image:
            try:
                hdr = {f: ds for f, ds in items}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", InputWarning)  # reported again when read
                    frames = [fr for f, ds in items for fr in _frames(f, ds, lone=len(items) == 1)]
                    frames, lps = _sorted_geometry(uid, frames, hdr, 0.05)
                ras = geometry.LPS_TO_RAS @ lps
                sp, orient = tuple(geometry.spacing(ras)), geometry.orientation(ras)  # type: ignore[assignment]
            except DicomError:
                ras = None  # listed without geometry; reading it reports the problem in full
        labelled = []
        for f, ds in items:
            try:
                if (obj := describe_label_object(f, ds)) is not None:
                    labelled.append(obj)
            except DicomError as exc:  # listed without references; reading it reports the problem in full
                log.debug("%s: %s", f, exc)
        out.append(
            SeriesInfo(
                uid=uid,
                modality=str(ds0.get("Modality", "")),
                description=str(ds0.get("SeriesDescription", "")),
                n_slices=n,
                size=size,
                spacing=sp,
                orientation=orient,
                files=tuple(f for f, _ in items),
                is_image=is_image,
                kind=_sop_class(ds0)[1],
                affine=ras,
                headers=tuple(items),
                references=tuple(dict.fromkeys(u for obj in labelled for u in obj.referenced_series)),
                names=tuple(n for obj in labelled for n in obj.names),
            )
        )
    return sorted(out, key=lambda s: (-int(s.is_image), -s.n_slices, s.uid))


def read_dicom(
    path: str | Path | Sequence[str | Path] | SeriesInfo,
    *,
    series_uid: str | None = None,
    spacing_tolerance: float = SPACING_TOLERANCE,
) -> Volume:
    """Read one DICOM image series as a Volume (RAS affine, rescaled values).

    Every header is parsed once: the series found by :func:`find_series` keep their headers,
    and a :class:`SeriesInfo` from it can be read directly.

    Args:
        path: a folder (searched recursively), a file, a list of files, or a series found by
            :func:`find_series`.
        series_uid: which series to read when the folder holds several image series.
        spacing_tolerance: largest allowed deviation of a slice gap from the median
            gap, as a fraction (0.05 = 5%); larger deviations (missing slices) raise.

    Returns:
        Volume of shape ``(1, X, Y, Z)`` (``(3, X, Y, Z)`` for RGB) with X = columns,
        Y = rows, Z = slices in increasing position along the normal. Integer data
        stays integer when RescaleSlope is 1 and the intercept is whole; otherwise
        float32. ``meta`` holds the UIDs, modality and the source files in slice order.
    """
    if isinstance(path, SeriesInfo):
        return _read_series(_where(list(path.files)), path, spacing_tolerance)
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    where = _where(paths)
    series = find_series(paths)
    images = [s for s in series if s.is_image]
    if series_uid is not None:
        chosen = [s for s in series if s.uid == series_uid]
        if not chosen:
            listing = "; ".join(s.summary() for s in series)
            raise DicomError(f"{where}: no series with UID {series_uid}; found: {listing}")
        info = chosen[0]
    elif len(images) == 1:
        info = images[0]
    elif not images:
        ds = series[0].headers[0][1]
        raise DicomError(f"{where}: holds {_what(ds)}, not an image series; give the image series it refers to")
    else:
        listing = "; ".join(s.summary() for s in images)
        raise DicomError(
            f"{where}: {len(images)} image series found ({listing}); choose one with series_uid=... "
            "(CLI: --series UID), see 'medseg info'"
        )
    return _read_series(where, info, spacing_tolerance)


def _where(paths: list[Path]) -> str:
    return str(paths[0]) if len(paths) == 1 else f"{paths[0].parent} ({len(paths)} files)"


def _read_series(where: str, info: SeriesInfo, spacing_tolerance: float) -> Volume:
    """The pixels and geometry of one series whose headers :func:`find_series` parsed."""
    headers = list(info.headers) or _read_headers(info.files)
    if not _is_image(headers[0][1]):
        raise DicomError(f"{where}: series {info.uid} is {_what(headers[0][1])}, not an image")
    hdr = {f: ds for f, ds in headers}
    frames = [fr for f, ds in headers for fr in _frames(f, ds, lone=len(headers) == 1)]
    frames, lps = _sorted_geometry(where, frames, hdr, spacing_tolerance)
    ds0 = headers[0][1]
    samples = int(ds0.get("SamplesPerPixel", 1))
    check_allocation(where, (samples, int(ds0.Columns), int(ds0.Rows), len(frames)), 4)
    array = _pixels(where, frames, samples)
    meta = {
        "source": where,
        "format": "dicom",
        "modality": str(ds0.get("Modality", "")),
        "series_uid": info.uid,
        "study_uid": str(ds0.get("StudyInstanceUID", "")),
        "frame_of_reference_uid": str(ds0.get("FrameOfReferenceUID", "")),
        "sop_class_uid": str(ds0.get("SOPClassUID", "")),
        "sop_instance_uids": [fr.sop_uid for fr in frames],
        "source_files": [str(fr.file) for fr in frames],
        "frame_indices": [fr.index for fr in frames],
        "series_description": str(ds0.get("SeriesDescription", "")),
        **({"colour": "RGB"} if samples == 3 else {}),
    }
    return Volume(array, geometry.LPS_TO_RAS @ lps, kind="intensity", meta=meta)


def _pixels(where: str, frames: list[_Frame], samples: int) -> np.ndarray:
    cache: dict[Path, np.ndarray] = {}
    slices = []
    for fr in frames:
        if fr.file not in cache:
            cache.clear()
            cache[fr.file] = _decode(fr.file)
        px = cache[fr.file]
        if fr.index is not None:
            if px.ndim < 3 or fr.index >= px.shape[0]:
                raise DicomError(f"{fr.file}: frame {fr.index + 1} is missing from the pixel data (shape {px.shape})")
            px = px[fr.index]
        expected = slices[0].shape if slices else px.shape
        if px.shape != expected or px.ndim != (2 if samples == 1 else 3):
            raise DicomError(
                f"{fr.file}: pixel data of shape {px.shape} does not match the series ({expected}, "
                f"{samples} sample(s) per pixel); the file is inconsistent with its header"
            )
        slices.append(px)
    stack = np.stack(slices, axis=-1)  # (rows, cols, [samples,] Z)
    stack = stack[None] if samples == 1 else np.moveaxis(stack, 2, 0)  # (C, rows, cols, Z)
    stack = stack.transpose(0, 2, 1, 3)  # (C, X=cols, Y=rows, Z)
    slopes = np.array([fr.slope for fr in frames])
    inters = np.array([fr.intercept for fr in frames])
    if np.all(slopes == 1) and np.all(inters == np.round(inters)) and np.abs(inters).max() < 2**20:
        if not np.any(inters):
            return np.ascontiguousarray(stack)
        out = stack.astype(np.int32) + inters.astype(np.int32)
        lo, hi = int(out.min()), int(out.max())
        return np.ascontiguousarray(out.astype(np.int16) if lo >= -32768 and hi <= 32767 else out)
    return np.ascontiguousarray(stack.astype(np.float32) * slopes.astype(np.float32) + inters.astype(np.float32))
