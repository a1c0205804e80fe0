"""Who a DICOM folder's image series belongs to, read from one header (names cases by patient)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom

from medseg.io.dicom import _dicom_files, _is_image
from medseg.io.dicom_pixels import PYDICOM_ERRORS
from medseg.io.dicom_pixels import pydicom_warnings as _pydicom_warnings


@dataclass(frozen=True)
class SeriesIdentity:
    """Who and what a DICOM image series is, from one header (see :func:`series_identity`).

    Attributes:
        patient_id: PatientID ('' when absent or empty, as anonymisers may leave it).
        study_uid, study_date: StudyInstanceUID and StudyDate (``YYYYMMDD`` or '').
        series_uid, series_number: SeriesInstanceUID and SeriesNumber ('' when absent).
        modality: e.g. ``"CT"``.
    """

    patient_id: str
    study_uid: str
    study_date: str
    series_uid: str
    series_number: str
    modality: str


_IDENTITY_TAGS = (
    "PatientID",
    "StudyInstanceUID",
    "StudyDate",
    "SeriesInstanceUID",
    "SeriesNumber",
    "Modality",
    "SOPClassUID",
    "Rows",
    "Columns",
)


def series_identity(folder: Path, series_uid: str | None = None) -> SeriesIdentity | None:
    """The identity of the image series a DICOM folder holds (or of ``series_uid``), read from one header.

    Headers are read without pixel data, file by file in name order, until the first image file
    (of ``series_uid`` when given): cheap enough to name thousands of cases. Labels (SEG,
    RTSTRUCT) and other non-image objects are passed over.

    Returns:
        The identity, or None when no readable image file (of that series) is found.
    """
    for f in _dicom_files([folder]):
        try:
            with _pydicom_warnings(f):
                ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=list(_IDENTITY_TAGS))
        except PYDICOM_ERRORS:
            continue  # reported in full when the series is read
        if not _is_image(ds) or (series_uid is not None and str(ds.get("SeriesInstanceUID", "")) != series_uid):
            continue
        return SeriesIdentity(
            *(str(ds.get(t, "") or "").strip() for t in _IDENTITY_TAGS[:6])  # type: ignore[arg-type]
        )
    return None
