"""RTSTRUCT export: one ROI per label, closed planar contours on voxel edges, for planning systems.

The structure set references its source series like the SEG exporter does: study, series and
frame-of-reference UIDs and every slice's SOP instance come from the image the case was read
from (``meta["source_files"]``), or from ``source_series`` when the image was NIfTI/NRRD.

Contour convention (see :mod:`medseg.io.contours`): each outline runs along voxel edges, not
through voxel centres, in patient coordinates (LPS mm) on the plane of its slice. Holes and
separate islands are separate contours; a reader that fills with the centre-inside, even-odd
rule (medseg, plastimatch, most planning systems) gets the mask back voxel for voxel, the
enclosed area equals the voxel count, and a one-voxel island is a unit square that planning
systems keep. ``geometric_type="CLOSEDPLANAR_XOR"`` states the even-odd rule in the file
(DICOM PS3.3 C.8.8.6.3) for readers that would otherwise union nested contours.

Why not rt-utils (checked, v1.3.1): it needs OpenCV (``opencv-python``, a large dependency),
rebuilds the series from a folder instead of the Volume medseg already holds, traces through
voxel centres by default (half a voxel lost all round; its newer ``voxel_edge`` mode is an
opt-in), and its reader matches contours to slices only by UID and rounds vertices to whole
pixels. The dataset is built here with pydicom; contour data is written as raw decimal
strings, which keeps large structure sets (millions of coordinates) fast to write.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from medseg.core.volume import Volume
from medseg.errors import InputWarning, OutputError
from medseg.export.base import ExportCase, Exporter, register_exporter
from medseg.export.dicom_seg import source_datasets, source_reference
from medseg.export.labels import label_color, label_name
from medseg.io import atomic_path
from medseg.io.clinical import RTSTRUCT_SOP_CLASS
from medseg.io.contours import to_patient, trace_polygons

#: The (retired, but universally used) SOP class that RT Referenced Study items name.
_STUDY_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"
_CONTOUR_DATA = Tag(0x3006, 0x0050)
#: Patient and study attributes copied from the source images (type 2: written, possibly empty).
_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


@register_exporter("rtstruct")
@dataclass(frozen=True)
class RtstructExporter(Exporter):
    """``CASE.rtstruct.dcm``: a DICOM RT Structure Set referencing the source series.

    Attributes:
        source_series: DICOM folder of the source series, when the image was not read from DICOM.
        geometric_type: ``"CLOSED_PLANAR"`` (the common type; holes are nested contours) or
            ``"CLOSEDPLANAR_XOR"`` (holes stated explicitly as even-odd).
        structure_set_label: StructureSetLabel (at most 16 characters).
        series_description: SeriesDescription of the structure set.
        series_number: SeriesNumber of the structure set.
        interpreted_type: RTROIInterpretedType of every ROI (e.g. ``"ORGAN"``, ``"GTV"``, or ``""``), or
            ``"auto"``: from each ROI's name (:func:`roi_type`: ``GTV`` → ``GTV``, ``body`` → ``EXTERNAL``, ...).
        algorithm: ROIGenerationAlgorithm: ``"AUTOMATIC"``, ``"SEMIAUTOMATIC"`` or ``"MANUAL"``.
    """

    name = "rtstruct"
    source_series: str | None = None
    geometric_type: Literal["CLOSED_PLANAR", "CLOSEDPLANAR_XOR"] = "CLOSED_PLANAR"
    structure_set_label: str = "medseg"
    series_description: str = "medseg structures"
    series_number: int = 301
    interpreted_type: str = "auto"
    algorithm: Literal["AUTOMATIC", "SEMIAUTOMATIC", "MANUAL"] = "AUTOMATIC"

    def export(self, case: ExportCase) -> list[Path]:
        """Write the RTSTRUCT file."""
        if self.geometric_type not in ("CLOSED_PLANAR", "CLOSEDPLANAR_XOR"):
            raise OutputError(
                f"rtstruct: geometric_type {self.geometric_type!r}; use 'CLOSED_PLANAR' or 'CLOSEDPLANAR_XOR'"
            )
        ref = source_reference(case, self.source_series, "rtstruct")
        for_uid = str(ref.meta.get("frame_of_reference_uid") or "")
        if not for_uid:
            raise OutputError(
                f"{case.case_id}: the source series {ref.meta.get('source')} has no FrameOfReferenceUID; "
                "an RTSTRUCT must name the frame of reference of its images"
            )
        sources = source_datasets(ref)
        ds = self._dataset(case, ref, sources[0], for_uid)
        path = case.path(".rtstruct.dcm")
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        return [path]

    def _dataset(self, case: ExportCase, ref: Volume, source: pydicom.Dataset, for_uid: str) -> FileDataset:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(RTSTRUCT_SOP_CLASS)
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
        now = datetime.now()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = RTSTRUCT_SOP_CLASS
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        for name in _COPIED:
            setattr(ds, name, source.get(name, ""))
        ds.StudyInstanceUID = str(ref.meta.get("study_uid") or source.get("StudyInstanceUID", ""))
        ds.FrameOfReferenceUID = for_uid  # the Frame of Reference module of the IOD
        ds.PositionReferenceIndicator = source.get("PositionReferenceIndicator", "")
        ds.Modality = "RTSTRUCT"
        ds.SeriesInstanceUID = generate_uid()
        ds.SeriesNumber = int(self.series_number)
        ds.SeriesDescription = self.series_description[:64]
        ds.SeriesDate, ds.SeriesTime = ds.InstanceCreationDate, ds.InstanceCreationTime
        ds.OperatorsName = ""
        from medseg import __version__ as version

        ds.Manufacturer = "medseg"
        ds.ManufacturerModelName = "medseg"
        ds.SoftwareVersions = str(version)
        ds.InstanceNumber = 1
        ds.StructureSetLabel = self.structure_set_label[:16]
        ds.StructureSetDate, ds.StructureSetTime = ds.InstanceCreationDate, ds.InstanceCreationTime
        images = _image_items(ref)
        ds.ReferencedFrameOfReferenceSequence = DicomSequence([_frame_of_reference(ref, for_uid, images)])
        rois, contours, observations = [], [], []
        labels = case.labels or {1: label_name(1)}  # an empty result still names one (empty) ROI: type 1 sequences
        for number, (value, label) in enumerate(sorted(labels.items()), start=1):
            rois.append(self._roi(number, label, for_uid))
            contours.append(self._contours(number, value, case, ref, images))
            if "ContourSequence" not in contours[-1]:
                warnings.warn(
                    f"{case.case_id}: label {value} ({label}) is empty: its RTSTRUCT ROI has no contours; check the "
                    "prediction before it is used for planning",
                    InputWarning,
                    stacklevel=3,
                )
            observations.append(self._observation(number, label))
        ds.StructureSetROISequence = DicomSequence(rois)
        ds.ROIContourSequence = DicomSequence(contours)
        ds.RTROIObservationsSequence = DicomSequence(observations)
        return ds

    def _roi(self, number: int, label: str, for_uid: str) -> Dataset:
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = for_uid
        item.ROIName = label[:64]
        item.ROIGenerationAlgorithm = self.algorithm
        return item

    def _observation(self, number: int, label: str) -> Dataset:
        item = Dataset()
        item.ObservationNumber = number
        item.ReferencedROINumber = number
        item.ROIObservationLabel = label[:16]
        item.RTROIInterpretedType = roi_type(label) if self.interpreted_type == "auto" else self.interpreted_type
        item.ROIInterpreter = ""
        return item

    def _contours(self, number: int, value: int, case: ExportCase, ref: Volume, images: list[Dataset]) -> Dataset:
        item = Dataset()
        item.ROIDisplayColor = list(label_color(value))
        item.ReferencedROINumber = number
        seq: list[Dataset] = []
        mask = case.label_map == value
        for k in np.flatnonzero(mask.any(axis=(0, 1))):
            for poly in trace_polygons(mask[:, :, k]):
                points = to_patient(np.column_stack([poly, np.full(len(poly), float(k))]), ref.affine)
                c = Dataset()
                c.ContourImageSequence = DicomSequence([_copy(images[int(k)])])
                c.ContourGeometricType = self.geometric_type
                c.NumberOfContourPoints = len(points)
                c.ContourNumber = len(seq) + 1
                text = _decimal_strings(points)
                c[_CONTOUR_DATA] = RawDataElement(_CONTOUR_DATA, "DS", len(text), text, 0, False, True)
                seq.append(c)
        if seq:
            item.ContourSequence = DicomSequence(seq)
        return item


#: RTROIInterpretedType (DICOM PS3.3 C.8.8.8) by the start of an ROI name; other names are ``ORGAN``.
_ROI_TYPES = (
    (re.compile(r"^(gtv|ctv|ptv|itv)", re.I), None),  # the name's own prefix
    (re.compile(r"^(external|body|skin|outline)", re.I), "EXTERNAL"),
    (re.compile(r"^bolus", re.I), "BOLUS"),
    (re.compile(r"^(couch|table|support)", re.I), "SUPPORT"),
    (re.compile(r"^(marker|fiducial|seed)", re.I), "MARKER"),
    (re.compile(r"^(avoid|prv)", re.I), "AVOIDANCE"),
)


def roi_type(name: str) -> str:
    """The RTROIInterpretedType a radiotherapy system expects for an ROI called ``name``.

    >>> [roi_type(n) for n in ("GTV_primary", "ptv60", "Body", "liver")]
    ['GTV', 'PTV', 'EXTERNAL', 'ORGAN']
    """
    for pattern, kind in _ROI_TYPES:
        m = pattern.match(name.strip())
        if m:
            return kind or m.group(1).upper()
    return "ORGAN"


def _decimal_strings(points: np.ndarray) -> bytes:
    """``x\\y\\z\\...`` with 0.1 µm resolution (at most 16 characters each), padded to even length."""
    text = "\\".join(f"{v:.4f}".rstrip("0").rstrip(".") for v in points.ravel().tolist()).encode("ascii")
    return text + b" " if len(text) % 2 else text


def _image_items(ref: Volume) -> list[Dataset]:
    """One Contour Image item per slice of ``ref`` (SOP class and instance, frame number for multi-frame)."""
    sop_class = str(ref.meta.get("sop_class_uid") or "1.2.840.10008.5.1.4.1.1.2")
    frames = ref.meta.get("frame_indices") or [None] * len(ref.meta["sop_instance_uids"])
    out = []
    for uid, frame in zip(ref.meta["sop_instance_uids"], frames):
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = uid
        if frame is not None:
            item.ReferencedFrameNumber = int(frame) + 1
        out.append(item)
    return out


def _copy(item: Dataset) -> Dataset:
    """A fresh item with the same elements (a dataset belongs to one sequence)."""
    out = Dataset()
    for elem in item:
        out.add_new(elem.tag, elem.VR, elem.value)
    return out


def _frame_of_reference(ref: Volume, for_uid: str, images: list[Dataset]) -> Dataset:
    series = Dataset()
    series.SeriesInstanceUID = str(ref.meta.get("series_uid", ""))
    series.ContourImageSequence = DicomSequence(images)
    study = Dataset()
    study.ReferencedSOPClassUID = _STUDY_SOP_CLASS
    study.ReferencedSOPInstanceUID = str(ref.meta.get("study_uid", ""))
    study.RTReferencedSeriesSequence = DicomSequence([series])
    item = Dataset()
    item.FrameOfReferenceUID = for_uid
    item.RTReferencedStudySequence = DicomSequence([study])
    return item
