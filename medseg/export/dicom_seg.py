"""DICOM Segmentation (SEG) export with highdicom (reading a SEG back: :mod:`medseg.io.seg`).

The SEG references its source series: study, series and frame-of-reference UIDs
are taken from the source images and every frame points at the source slice it
lies on. The source comes from the image a case was read from (``meta["source_files"]``,
set by :func:`medseg.io.read_dicom`), or from ``source_series`` (a DICOM folder)
when the image was NIfTI/NRRD; without either the export fails with a clear error.

Array layout: medseg masks are ``(X, Y, Z)`` with X = DICOM columns, Y = rows and
Z = slices in the order of ``meta["source_files"]``; SEG frames are ``(rows, columns)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid
from pydicom.valuerep import format_number_as_ds

from medseg.core import geometry
from medseg.core.volume import Volume
from medseg.errors import DicomError, InputError, OutputError
from medseg.export.base import ExportCase, Exporter, register_exporter
from medseg.export.labels import label_color
from medseg.io import atomic_path, read_dicom
from medseg.io.seg import POSITION_TOLERANCE, SEG_SOP_CLASS, read_dicom_seg

__all__ = [
    "POSITION_TOLERANCE",
    "SEG_SOP_CLASS",
    "SOURCE_TYPE2_ATTRIBUTES",
    "DicomSegExporter",
    "coded_terms",
    "fill_type2_attributes",
    "read_dicom_seg",
    "source_datasets",
]

#: Type-2 attributes (required, but may be empty) that a SEG or RTSTRUCT copies from its source images:
#: the Patient and General Study modules and the Frame of Reference's PositionReferenceIndicator.
#: Anonymisers often delete them; :func:`fill_type2_attributes` writes the missing ones empty.
SOURCE_TYPE2_ATTRIBUTES: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "PositionReferenceIndicator",
)

_ABNORMAL = ("lesion", "tumor", "tumour", "nodule", "neoplasm", "metastasis", "cyst")


def coded_terms(name: str) -> tuple[hd.sr.CodedConcept, hd.sr.CodedConcept]:
    """``(category, type)`` SNOMED CT codes for a label name.

    Known structures (``liver``, ``spleen``, ``kidney_left`` → Kidney, ``lesion``, ...) get their
    SNOMED CT concept from pydicom's code dictionary, with category "Anatomical Structure"
    or "Morphologically Abnormal Structure"; anything else is "Tissue"/"Tissue".
    """
    words = [w for w in re.split(r"[^A-Za-z0-9]+", name) if w]
    candidates = ["".join(w.capitalize() for w in words)] + [w.capitalize() for w in words]
    for cand in candidates:
        try:
            code = getattr(codes.SCT, cand)
        except AttributeError:
            continue
        abnormal = any(w.lower() in _ABNORMAL for w in words) or cand.lower() in _ABNORMAL
        category = codes.SCT.MorphologicallyAbnormalStructure if abnormal else codes.SCT.AnatomicalStructure
        return hd.sr.CodedConcept.from_code(category), hd.sr.CodedConcept.from_code(code)
    return hd.sr.CodedConcept.from_code(codes.SCT.Tissue), hd.sr.CodedConcept.from_code(codes.SCT.Tissue)


def source_reference(case: ExportCase, source_series: str | None, exporter: str = "dicom_seg") -> Volume:
    """The DICOM-read Volume whose files the SEG/RTSTRUCT references (``case.image`` or ``source_series``).

    Raises:
        OutputError: no DICOM source is known.
        GeometryError: the mask is not on the source series' grid.
    """
    image = case.image
    if image is not None and image.meta.get("source_files"):
        return image
    if source_series is None:
        src = (image.meta.get("source") if image is not None else None) or "no image"
        raise OutputError(
            f"{case.case_id}: {'RTSTRUCT' if exporter == 'rtstruct' else 'DICOM SEG'} needs the source DICOM "
            f"series, but the reference image ({src}) was not read from DICOM; give the DICOM folder as the "
            f"reference image, or the {exporter} option source_series (CLI: --dicom-source DIR)"
        )
    ref = read_dicom(source_series)
    ref.require_grid(case.mask, "mask")
    return ref


@register_exporter("dicom_seg")
@dataclass(frozen=True)
class DicomSegExporter(Exporter):
    """``CASE.seg.dcm``: a DICOM Segmentation referencing the source series.

    Attributes:
        segmentation_type: ``"binary"`` (one bit per voxel and segment) or ``"fractional"``
            (probabilities 0..1 stored as 0..255; needs a probability mask ``(C, X, Y, Z)``).
        source_series: DICOM folder of the source series, when the image was not read from DICOM.
        algorithm_type: ``"automatic"``, ``"semiautomatic"`` or ``"manual"``.
        algorithm_name: recorded as the segmentation algorithm's name.
        series_description: SeriesDescription of the SEG.
        series_number: SeriesNumber of the SEG.
    """

    name = "dicom_seg"
    segmentation_type: Literal["binary", "fractional"] = "binary"
    source_series: str | None = None
    algorithm_type: Literal["automatic", "semiautomatic", "manual"] = "automatic"
    algorithm_name: str = "medseg"
    series_description: str = "medseg segmentation"
    series_number: int = 300

    def export(self, case: ExportCase) -> list[Path]:
        """Write the SEG file."""
        if self.segmentation_type not in ("binary", "fractional"):
            raise OutputError(f"dicom_seg: segmentation_type {self.segmentation_type!r}; use 'binary' or 'fractional'")
        ref = source_reference(case, self.source_series)
        sources = source_datasets(ref)
        values, frames = self._frames(case)
        empty = not values
        if empty:  # an empty result: one empty segment per named label (or label_1)
            values = list(case.labels) or [1]
            frames = np.zeros((*frames.shape[:3], len(values)), dtype=np.uint8)
        frames = _to_source_order(ref, frames, sources)
        names = {v: case.labels.get(v, f"label_{v}") for v in values}
        descriptions = [self._description(i + 1, v, names[v], case.case_id) for i, v in enumerate(values)]
        from medseg import __version__ as version

        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues[self.segmentation_type.upper()],
            segment_descriptions=descriptions,
            series_instance_uid=generate_uid(),
            series_number=int(self.series_number),
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="medseg",
            manufacturer_model_name="medseg",
            software_versions=str(version),
            device_serial_number="0",
            series_description=self.series_description[:64],
            content_label="SEGMENTATION",
            content_description=f"{case.case_id} segmentation"[:64],
            omit_empty_frames=not empty,
            max_fractional_value=255,
        )
        _fix_slice_spacing(seg, ref)
        path = case.path(".seg.dcm")
        with atomic_path(path) as tmp:
            seg.save_as(tmp)
        return [path]

    def _frames(self, case: ExportCase) -> tuple[list[int], np.ndarray]:
        """Label values and stacked frames ``(Z, rows=Y, cols=X, segments)``."""
        if self.segmentation_type == "fractional":
            probs = case.mask.numpy()
            if case.mask.kind != "probability" or probs.shape[0] < 2:
                raise InputError(
                    f"{case.case_id}: fractional DICOM SEG needs a probability mask (C, X, Y, Z) with channel "
                    f"0 = background, got kind {case.mask.kind!r} with {probs.shape[0]} channel(s); "
                    "use segmentation_type='binary' for label maps"
                )
            values = [c for c in range(1, probs.shape[0]) if np.any(probs[c] > 0)]
            data: np.ndarray = np.clip(probs[values].astype(np.float32), 0.0, 1.0)  # (S, X, Y, Z)
        else:
            values = case.present
            if not values:
                x, y, z = case.label_map.shape
                return [], np.zeros((z, y, x, 0), dtype=np.uint8)
            data = np.stack([case.label_map == v for v in values]).astype(np.uint8)
        return values, np.ascontiguousarray(data.transpose(3, 2, 1, 0))

    def _description(self, number: int, value: int, name: str, case_id: str) -> hd.seg.SegmentDescription:
        category, prop = coded_terms(name)
        algo = None
        if self.algorithm_type != "manual":
            from medseg import __version__ as version

            algo = hd.AlgorithmIdentificationSequence(
                name=self.algorithm_name[:64], family=codes.cid7162.ArtificialIntelligence, version=str(version)
            )
        return hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=name[:64],
            segmented_property_category=category,
            segmented_property_type=prop,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues[self.algorithm_type.upper()],
            algorithm_identification=algo,
            tracking_id=f"{case_id} label {value}"[-64:],
            tracking_uid=generate_uid(),
            display_color=hd.color.CIELabColor.from_rgb(*label_color(value)),
        )


def _fix_slice_spacing(seg: hd.seg.Segmentation, ref: Volume) -> None:
    """Set SpacingBetweenSlices to the step measured from the slice positions.

    highdicom copies the source header's value, which real series sometimes get wrong
    (e.g. 2 mm written while the slices are 7 mm apart); readers such as dcmqi trust it.
    """
    if ref.spatial_shape[2] < 2:
        return
    step = float(geometry.spacing(ref.affine)[2])
    groups = [seg.SharedFunctionalGroupsSequence[0]] if "SharedFunctionalGroupsSequence" in seg else []
    groups += list(seg.get("PerFrameFunctionalGroupsSequence", []))
    for group in groups:
        for item in group.get("PixelMeasuresSequence", []):
            item.SpacingBetweenSlices = format_number_as_ds(step)


def fill_type2_attributes(ds: pydicom.Dataset) -> pydicom.Dataset:
    """Write each of :data:`SOURCE_TYPE2_ATTRIBUTES` that ``ds`` lacks as an empty element (as the
    standard allows for type 2), so a de-identified source exports like any other. Changes ``ds`` in
    place (a copy read for the export, never the file) and returns it."""
    for name in SOURCE_TYPE2_ATTRIBUTES:
        if name not in ds:
            setattr(ds, name, None)
    return ds


def source_datasets(ref: Volume) -> list[pydicom.Dataset]:
    """The headers of the source files of ``ref`` (no pixel data), type-2 attributes completed by
    :func:`fill_type2_attributes`: what the SEG and RTSTRUCT exporters copy from and reference."""
    files = list(dict.fromkeys(ref.meta["source_files"]))
    out: list[pydicom.Dataset] = []
    for f in files:
        try:
            out.append(fill_type2_attributes(pydicom.dcmread(f, stop_before_pixels=True)))
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise DicomError(f"{f}: cannot re-read the source DICOM file for the SEG/RTSTRUCT ({exc})") from exc
    return out


def _to_source_order(ref: Volume, frames: np.ndarray, sources: Sequence[pydicom.Dataset]) -> np.ndarray:
    """Frames in the order highdicom expects: one per source file, or per frame of a multi-frame file."""
    indices = ref.meta.get("frame_indices") or [None] * frames.shape[0]
    if all(i is None for i in indices):
        if len(sources) != frames.shape[0]:
            raise DicomError(
                f"{ref.meta.get('source')}: {len(sources)} source files for {frames.shape[0]} slices; "
                "the SEG needs one source image per slice"
            )
        return frames
    if len(sources) != 1:
        raise DicomError(
            f"{ref.meta.get('source')}: the series mixes several multi-frame files; DICOM SEG export "
            "supports classic series or one enhanced multi-frame file"
        )
    out = np.zeros((int(sources[0].NumberOfFrames), *frames.shape[1:]), dtype=frames.dtype)
    out[np.asarray(indices, dtype=int)] = frames
    return out
