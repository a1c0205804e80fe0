"""DICOMweb archives: QIDO-RS to find series, WADO-RS to fetch them, STOW-RS to store results (dicomweb-client)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

from medseg.archive.client import ArchiveUnreachable, SeriesRecord, TransferAborted, with_retries
from medseg.archive.store import write_instance
from medseg.archive.urls import ArchiveURL, dicomweb_credentials
from medseg.errors import ArchiveError

logger = logging.getLogger(__name__)

_TIMEOUT_S = (10.0, 120.0)  # connect, read


class _ShortResponse(Exception):
    """A WADO-RS response that ended before all the instances the archive counts, or inside an instance."""


#: A response cut off after it began: the connection closed before its announced end, or (dicomweb-client
#: does not notice a multipart body without its closing boundary) fewer or truncated instances arrived.
_CUT_OFF = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError, _ShortResponse)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, *_CUT_OFF)):
        return True
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return False


class DicomWebArchive:
    """A DICOMweb service at ``url`` (``dicomweb+http(s)://HOST:PORT/PATH``).

    Credentials come from :func:`medseg.archive.urls.dicomweb_credentials` (environment or netrc).
    """

    def __init__(self, url: ArchiveURL, *, tries: int = 3) -> None:
        self.url = url
        self.tries = tries
        creds = dicomweb_credentials(url)
        session = requests.Session()
        if creds.token:
            session.headers["Authorization"] = f"Bearer {creds.token}"
        elif creds.user and creds.password:
            session.auth = (creds.user, creds.password)
        self._client = DICOMwebClient(url.base_url, session=session, timeout=_TIMEOUT_S)
        # its own retries (5 tries, 30 s of backoff, on any error) would hide an archive that is down: ours are bounded
        self._client.set_http_retry_params(retry=False)

    def _call(self, what: str, call: Any) -> Any:
        try:
            return with_retries(call, what, transient=_transient, tries=self.tries)
        except _CUT_OFF as exc:
            detail = str(exc) if isinstance(exc, _ShortResponse) else "the connection closed before its end"
            raise TransferAborted(self.url.display(), what, f"{detail}; tried {self.tries} times") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ArchiveUnreachable(self.url.display(), _reason(exc)) from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            hint = (
                " (check MEDSEG_DICOMWEB_USER/MEDSEG_DICOMWEB_PASSWORD, MEDSEG_DICOMWEB_TOKEN or netrc)"
                if status in (401, 403)
                else ""
            )
            raise ArchiveError(f"{self.url.display()}: {what} refused with HTTP {status}{hint}") from None

    def find_series(self, study: Mapping[str, str], series: Mapping[str, str]) -> list[SeriesRecord]:
        """QIDO-RS: studies matching ``study``, then their series matching ``series``."""
        if set(study) <= {"StudyInstanceUID"} and study:
            study_uids = [study["StudyInstanceUID"]]
        else:
            found = self._call(
                "QIDO-RS study search",
                lambda: self._client.search_for_studies(search_filters=dict(study), get_remaining=True),
            )
            study_uids = [_value(d, "0020000D") for d in found]
        records: list[SeriesRecord] = []
        for uid in study_uids:
            rows = self._call(
                "QIDO-RS series search",
                lambda uid=uid: self._client.search_for_series(
                    uid,
                    search_filters=dict(series),
                    get_remaining=True,
                    fields=["NumberOfSeriesRelatedInstances", "SeriesDescription"],
                ),
            )
            for d in rows:
                count = _value(d, "00201209")
                records.append(
                    SeriesRecord(
                        study_uid=_value(d, "0020000D") or uid,
                        series_uid=_value(d, "0020000E"),
                        modality=_value(d, "00080060"),
                        instances=int(count) if str(count).strip().isdigit() else None,
                        series_number=str(_value(d, "00200011")),
                        description=str(_value(d, "0008103E")),
                    )
                )
        return records

    def fetch_series(self, record: SeriesRecord, folder: Path) -> int:
        """WADO-RS: every instance of the series into ``folder``; returns how many were written."""

        def fetch() -> int:
            n, short, last_short = 0, [], False
            for ds in self._client.iter_series(record.study_uid, record.series_uid):
                last_short = _pixels_short(ds)
                if last_short:  # cut off, if nothing follows; else an instance stored that way
                    short.append(str(ds.get("SOPInstanceUID", "?")))
                    continue
                write_instance(ds, folder)
                n += 1
            if last_short:  # the response ended inside it (a stored one that short is only told apart when not last)
                raise _ShortResponse("the response ended inside an instance's pixel data")
            if record.instances is not None and n + len(short) < record.instances:
                raise _ShortResponse(f"the response held {n} of the {record.instances} instances the archive lists")
            if short:
                raise ArchiveError(
                    f"instance {short[0]} has pixel data shorter than its rows × "
                    f"columns × bits ({len(short)} such instance(s)): malformed in the archive; fix or re-send it there"
                )
            return n

        return int(self._call("WADO-RS series retrieval", fetch))

    def store(self, files: Sequence[Path]) -> None:
        """STOW-RS every file (read with pydicom) in one request."""
        datasets = [pydicom.dcmread(f) for f in files]
        response = self._call("STOW-RS", lambda: self._client.store_instances(datasets))
        failed = response.get("FailedSOPSequence") if response is not None else None
        if failed:
            raise ArchiveError(f"{self.url.display()}: STOW-RS refused {len(failed)} of {len(datasets)} instances")


def _pixels_short(ds: pydicom.Dataset) -> bool:
    """True when uncompressed pixel data is shorter than rows × columns × samples × bytes × frames."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" not in ds or syntax is None or syntax.is_compressed:
        return False
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * frames
        expected = expected * int(ds.BitsAllocated) // 8
    except (AttributeError, TypeError, ValueError):  # attributes missing: the reader reports the instance
        return False
    return len(ds.PixelData) < expected


def _value(d: Mapping[str, Any], tag: str) -> Any:
    values = d.get(tag, {}).get("Value") or [""]
    return values[0] if not isinstance(values[0], dict) else values[0].get("Alphabetic", "")


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in (
        "Connection refused",
        "timed out",
        "Name or service not known",
        "No route to host",
        "certificate verify failed",
    ):
        if marker in text:
            return marker
    return type(exc).__name__
