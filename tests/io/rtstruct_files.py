"""Hand-built RTSTRUCT files for reader tests, independent of medseg's own writer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medseg.core import Volume
from medseg.io.contours import to_patient

RTSTRUCT = "1.2.840.10008.5.1.4.1.1.481.3"

#: one contour: (points (N, 3) LPS mm, referenced SOP instance UID or "", geometric type)
Contour = tuple[np.ndarray, str, str]


def square(ref: Volume, k: int, i0: float, i1: float, j0: float, j1: float, uid: bool = True) -> Contour:
    """A rectangle on slice ``k`` between voxel coordinates ``i0..i1`` × ``j0..j1``, in LPS mm."""
    uvw = np.array([[i0, j0, k], [i1, j0, k], [i1, j1, k], [i0, j1, k]], float)
    sop = ref.meta["sop_instance_uids"][k] if uid and ref.meta.get("sop_instance_uids") else ""
    return to_patient(uvw, ref.affine), sop, "CLOSED_PLANAR"


def write_rtstruct(
    path: Path,
    ref: Volume,
    rois: Sequence[tuple[str, Sequence[Contour]]],
    *,
    frame_of_reference: str | None = None,
    series_uid: str | None = None,
) -> Path:
    """Write an RTSTRUCT with ``rois`` = ``[(name, [contour, ...]), ...]`` referencing ``ref``'s series."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = RTSTRUCT
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.PatientID = "P1"
    ds.StudyInstanceUID = ref.meta.get("study_uid") or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    for_uid = frame_of_reference or ref.meta.get("frame_of_reference_uid") or generate_uid()
    series = Dataset()
    series.SeriesInstanceUID = series_uid or ref.meta.get("series_uid") or generate_uid()
    study = Dataset()
    study.RTReferencedSeriesSequence = DicomSequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = for_uid
    frame.RTReferencedStudySequence = DicomSequence([study])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame])
    ss, rc = [], []
    for number, (name, contours) in enumerate(rois, start=1):
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = for_uid
        item.ROIName = name
        ss.append(item)
        roi = Dataset()
        roi.ReferencedROINumber = number
        roi.ROIDisplayColor = [255, 0, 0]
        seq = []
        for points, sop, kind in contours:
            c = Dataset()
            c.ContourGeometricType = kind
            pts = np.asarray(points, float).reshape(-1, 3)
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [f"{v:.6f}" for v in pts.ravel()]
            if sop:
                img = Dataset()
                img.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
                img.ReferencedSOPInstanceUID = sop
                c.ContourImageSequence = DicomSequence([img])
            seq.append(c)
        if seq:
            roi.ContourSequence = DicomSequence(seq)
        rc.append(roi)
    ds.StructureSetROISequence = DicomSequence(ss)
    ds.ROIContourSequence = DicomSequence(rc)
    ds.save_as(path, enforce_file_format=True)
    return path
