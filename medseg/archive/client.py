"""What medseg asks of an archive, whatever its protocol: find series, fetch one, store files.

:func:`connect` returns a :class:`DicomWebArchive` or a :class:`DimseArchive` for an address;
both retry transient failures a few times with exponential backoff (bounded) and raise
:class:`ArchiveUnreachable` when nothing answers at the address.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from medseg.archive.urls import ArchiveURL
from medseg.errors import ArchiveError, ConfigError, did_you_mean

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Modalities of series that are not images medseg segments (reported, never fetched).
NON_IMAGE_MODALITIES = {
    "SR": "a Structured Report (SR)",
    "PR": "a presentation state (PR)",
    "KO": "a key object selection (KO)",
    "DOC": "an encapsulated document (DOC)",
    "RTDOSE": "an RT dose (RTDOSE)",
    "RTPLAN": "an RT plan (RTPLAN)",
    "RTSTRUCT": "an RT structure set (RTSTRUCT)",
    "RTRECORD": "an RT treatment record (RTRECORD)",
    "SEG": "a segmentation (SEG)",
    "REG": "a registration (REG)",
    "ECG": "a waveform (ECG)",
}

#: Attributes a filter may name at the series level; every other keyword filters studies.
SERIES_KEYWORDS = (
    "Modality",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "BodyPartExamined",
    "SeriesDate",
    "ProtocolName",
)
#: Attributes a filter may name at the study level.
STUDY_KEYWORDS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "StudyID",
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "ReferringPhysicianName",
    "ModalitiesInStudy",
    "InstitutionName",
)


class ArchiveUnreachable(ArchiveError):
    """Nothing answers at the archive's address (connection refused, timeout, no association)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot reach the archive at {address} ({reason}); check the address/port and that it runs")
        self.address, self.reason = address, reason


class TransferAborted(ArchiveError):
    """A transfer that had begun was cut off (association aborted, connection closed mid-response), every try."""

    def __init__(self, address: str, what: str, reason: str) -> None:
        super().__init__(f"{what} from {address} was cut off mid-transfer ({reason})")
        self.address, self.reason = address, reason


@dataclass(frozen=True)
class SeriesRecord:
    """One series as the archive describes it.

    Attributes:
        study_uid, series_uid: StudyInstanceUID and SeriesInstanceUID.
        modality: e.g. ``"MR"``, ``"SR"``.
        instances: NumberOfSeriesRelatedInstances as the archive counts them (None when not given).
        series_number, description: SeriesNumber and SeriesDescription ('' when absent).
    """

    study_uid: str
    series_uid: str
    modality: str
    instances: int | None
    series_number: str = ""
    description: str = ""

    @property
    def is_image(self) -> bool:
        """False for SR, PR, RTDOSE, SEG, RTSTRUCT and other non-image modalities."""
        return self.modality.upper() not in NON_IMAGE_MODALITIES

    def what(self) -> str:
        """A phrase for the report, e.g. ``"a Structured Report (SR)"``."""
        return NON_IMAGE_MODALITIES.get(self.modality.upper(), f"a {self.modality or 'modality-less'} series")


class Archive(Protocol):
    """An archive medseg pulls series from and pushes results to."""

    url: ArchiveURL

    def find_series(self, study: Mapping[str, str], series: Mapping[str, str]) -> list[SeriesRecord]:
        """Series whose study matches ``study`` and which match ``series`` (DICOM keyword → value)."""
        ...

    def fetch_series(self, record: SeriesRecord, folder: Path) -> int:
        """Write every instance of the series into ``folder`` (one file per SOPInstanceUID); returns the count."""
        ...

    def store(self, files: Sequence[Path]) -> None:
        """Store DICOM files in the archive (STOW-RS or C-STORE); raises :class:`ArchiveError` when refused."""
        ...


def connect(url: ArchiveURL, *, ae_title: str = "MEDSEG", tls: object | None = None, tries: int = 3) -> Archive:
    """An :class:`Archive` for ``url``.

    Args:
        url: the parsed address.
        ae_title: medseg's calling AE title (DIMSE).
        tls: an ``ssl.SSLContext`` for DIMSE over TLS (DICOMweb uses https:// URLs).
        tries: attempts per request for transient errors (1 = no retry).
    """
    quiet_libraries()
    if url.protocol == "dicomweb":
        from medseg.archive.dicomweb import DicomWebArchive

        return DicomWebArchive(url, tries=tries)
    from medseg.archive.dimse import DimseArchive

    return DimseArchive(url, ae_title=ae_title, ssl_context=tls, tries=tries)


def split_filters(
    filters: Sequence[str], *, study_uid: str | None = None, series_uid: str | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """``["Modality=CT", "StudyDate=20240101-20241231"]`` → (study filters, series filters).

    Raises:
        ConfigError: a filter without ``=``, or an attribute medseg does not query (did-you-mean).
    """
    study: dict[str, str] = {}
    series: dict[str, str] = {}
    for text in filters:
        key, sep, value = text.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ConfigError(f"--filter {text!r}: expected KEYWORD=VALUE, e.g. --filter Modality=CT")
        if key in SERIES_KEYWORDS:
            series[key] = value
        elif key in STUDY_KEYWORDS:
            study[key] = value
        else:
            known = SERIES_KEYWORDS + STUDY_KEYWORDS
            raise ConfigError(
                f"--filter {text!r}: '{key}' is not an attribute medseg queries{did_you_mean(key, known)}; "
                f"use one of {', '.join(known)}"
            )
    if study_uid:
        study["StudyInstanceUID"] = study_uid
    if series_uid:
        series["SeriesInstanceUID"] = series_uid
    return study, series


def with_retries(
    call: Callable[[], T],
    what: str,
    *,
    transient: Callable[[BaseException], bool],
    tries: int = 3,
    backoff_s: float = 0.5,
) -> T:
    """``call()``, retried up to ``tries`` times in all when ``transient(error)``, waiting
    ``backoff_s``, 2×, 4× ... seconds between tries (bounded: at most ``tries`` calls)."""
    for attempt in range(1, max(tries, 1) + 1):
        try:
            return call()
        except Exception as exc:
            if attempt >= tries or not transient(exc):
                raise
            wait = backoff_s * 2 ** (attempt - 1)
            logger.debug("%s failed (%s); try %d of %d in %.1f s", what, type(exc).__name__, attempt + 1, tries, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def quiet_libraries() -> None:
    """Keep the protocol libraries' own log lines (requests made, associations, aborts) out of medseg's
    output unless medseg logs at DEBUG (``medseg -v``): medseg reports what went wrong in one line."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("dicomweb_client").setLevel(logging.WARNING)
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
