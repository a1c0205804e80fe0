"""Write a Volume as a classic DICOM image series (one file per slice).

Used to build DICOM test inputs with known geometry (and to hand synthetic
phantoms to DICOM tools). Geometry is exact: ImagePositionPatient and
ImageOrientationPatient come from the affine (converted to LPS).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

from medseg.core import geometry
from medseg.core.volume import Volume
from medseg.errors import GeometryError, OutputError

SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}


def write_series(
    volume: Volume,
    folder: str | Path,
    *,
    modality: str = "CT",
    series_uid: str | None = None,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_description: str = "medseg synthetic series",
    rescale_intercept: float = 0.0,
    patient_id: str = "PHANTOM",
    series_number: int = 1,
) -> list[Path]:
    """Write a single-channel volume as one DICOM file per Z slice; returns the files.

    Values are stored as int16 ``round(value - rescale_intercept)`` with RescaleSlope 1.
    The affine must be orthogonal (no shear); pixel spacing comes from X/Y, the
    slice positions from the Z axis.
    """
    if volume.n_channels != 1:
        raise OutputError(f"{folder}: DICOM series need one channel, got {volume.n_channels}")
    if geometry.is_sheared(volume.affine):
        raise GeometryError(f"{folder}: sheared affines cannot be written as a classic DICOM series")
    if modality not in SOP_CLASS:
        raise OutputError(f"{folder}: modality {modality!r} not supported; use one of {sorted(SOP_CLASS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lps = geometry.LPS_TO_RAS @ volume.affine
    d = geometry.direction(lps)
    sx, sy, sz = geometry.spacing(lps)
    data = np.round(volume.numpy()[0] - rescale_intercept)
    if data.min() < -32768 or data.max() > 32767:
        raise OutputError(f"{folder}: values do not fit int16 after the intercept {rescale_intercept}")
    data = data.astype(np.int16)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    for_uid = frame_of_reference_uid or generate_uid()
    now = datetime(2024, 1, 1, 12, 0, 0)
    files = []
    for k in range(data.shape[2]):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"slice_{k:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = SOP_CLASS[modality]
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = for_uid
        ds.Modality = modality
        ds.SeriesDescription = series_description
        ds.PatientName = "Phantom^Synthetic"
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.Manufacturer = "medseg"
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        if modality == "CT":
            ds.KVP = ""
        else:
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "3D"
            ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength = 10, 500, 1
            ds.MagneticFieldStrength, ds.ImagingFrequency, ds.ImagedNucleus = 1.5, 63.9, "1H"
        ds.ImagePositionPatient = [_ds(v) for v in lps[:3, 3] + lps[:3, 2] * k]
        ds.ImageOrientationPatient = [_ds(v) for v in np.concatenate([d[:, 0], d[:, 1]])]
        ds.PixelSpacing = [_ds(sy), _ds(sx)]
        ds.SliceThickness = _ds(sz)
        ds.SpacingBetweenSlices = _ds(sz)
        ds.SliceLocation = _ds(float(lps[2, 3] + lps[2, 2] * k))
        ds.PatientPosition = "HFS"
        ds.AcquisitionNumber = 1
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, rescale_intercept
        if modality == "CT":
            ds.RescaleType = "HU"
        ds.PixelData = np.ascontiguousarray(data[:, :, k].T).tobytes()
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def _ds(value: float) -> DSfloat:
    """A Decimal String of at most 16 characters (the DICOM limit)."""
    return DSfloat(float(value), auto_format=True)
