"""DIMSE archives: C-FIND to find series, C-GET to fetch them, C-STORE to store results (pynetdicom)."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND  # type: ignore[attr-defined]
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET  # type: ignore[attr-defined]

from medseg.archive.client import ArchiveUnreachable, SeriesRecord, TransferAborted, with_retries
from medseg.archive.store import write_encoded
from medseg.archive.urls import ArchiveURL
from medseg.errors import ArchiveError

logger = logging.getLogger(__name__)

#: Image storage SOP classes medseg accepts over C-GET (and the listener over C-STORE).
IMAGE_STORAGE = (
    "1.2.840.10008.5.1.4.1.1.2",  # CT
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4",  # MR
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
    "1.2.840.10008.5.1.4.1.1.128",  # PET
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET
    "1.2.840.10008.5.1.4.1.1.20",  # NM
    "1.2.840.10008.5.1.4.1.1.6.1",  # US
    "1.2.840.10008.5.1.4.1.1.3.1",  # US multi-frame
    "1.2.840.10008.5.1.4.1.1.1",  # CR
    "1.2.840.10008.5.1.4.1.1.1.1",  # DX
    "1.2.840.10008.5.1.4.1.1.1.2",  # MG
    "1.2.840.10008.5.1.4.1.1.7",  # secondary capture
    "1.2.840.10008.5.1.4.1.1.12.1",  # XA
    "1.2.840.10008.5.1.4.1.1.481.1",  # RT image
)
_TRANSFER = (pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian)
_TIMEOUT_S = 30.0


class _Transient(Exception):
    """An association that was refused for a transient reason or aborted mid-transfer."""


class _Aborted(_Transient):
    """An association aborted (or its connection closed) while a DIMSE operation was under way."""


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, _Transient)


def _acknowledge_at_once(event: Any) -> None:
    """Ask the kernel to acknowledge the peer's next TCP segments at once (Linux ``TCP_QUICKACK``).

    During C-GET the archive sends a C-STORE request, waits for our response, then sends a small C-GET
    pending response and the next request. An archive with Nagle's algorithm on (Orthanc's DIMSE port)
    holds that small segment until its predecessor is acknowledged, and Linux delays the acknowledgement
    of a connection that has nothing more to send by up to 40 ms: about 50 ms per instance, whatever its
    size. Quick-ack mode lapses on its own, so this runs after every PDU medseg sends (``EVT_DATA_SENT``),
    which is when the peer's next segments are due. A no-op where the option does not exist.
    """
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is None or not hasattr(socket, "TCP_QUICKACK"):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    except OSError as exc:  # a socket closed meanwhile: the reactor reports the closed connection itself
        logger.debug("TCP_QUICKACK not set: %s", exc)


class DimseArchive:
    """A DICOM node at ``url`` (``dimse://AET@HOST:PORT``), called as ``ae_title``."""

    def __init__(
        self, url: ArchiveURL, *, ae_title: str = "MEDSEG", ssl_context: object | None = None, tries: int = 3
    ) -> None:
        self.url = url
        self.ae_title = ae_title
        self.ssl_context = ssl_context
        self.tries = tries

    @contextmanager
    def _association(
        self,
        contexts: Sequence[tuple[str, Sequence[str]]],
        roles: Sequence[Any] = (),
        handlers: Sequence[tuple[Any, Callable[..., Any]]] = (),
    ) -> Iterator[Association]:
        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = _TIMEOUT_S
        for sop, syntaxes in contexts:
            ae.add_requested_context(sop, list(syntaxes))
        tls = (self.ssl_context, self.url.host) if isinstance(self.ssl_context, ssl.SSLContext) else None
        assoc = ae.associate(
            self.url.host,
            self.url.port,
            ae_title=self.url.aet,
            ext_neg=list(roles) or None,
            tls_args=tls,
            evt_handlers=[*handlers, (evt.EVT_DATA_SENT, _acknowledge_at_once)],
        )
        if assoc.is_rejected:
            ae.shutdown()
            raise ArchiveError(
                f"{self.url.display()} rejected the association from {self.ae_title} (check that the archive knows "
                f"this AE title, --ae, and the called AE title {self.url.aet})"
            )
        if not assoc.is_established:
            ae.shutdown()
            raise _Transient("no association: connection refused, aborted or timed out")
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()
            ae.shutdown()

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return with_retries(call, what, transient=_transient, tries=self.tries)
        except _Aborted as exc:
            raise TransferAborted(self.url.display(), what, f"{exc}; tried {self.tries} times") from None
        except _Transient as exc:
            raise ArchiveUnreachable(self.url.display(), str(exc)) from None

    def find_series(self, study: Mapping[str, str], series: Mapping[str, str]) -> list[SeriesRecord]:
        """C-FIND (study root): studies matching ``study``, then their series matching ``series``."""
        if set(study) <= {"StudyInstanceUID"} and study:
            study_uids = [study["StudyInstanceUID"]]
        else:
            q = _query("STUDY", {**study, "StudyInstanceUID": study.get("StudyInstanceUID", "")})
            study_uids = [str(d.StudyInstanceUID) for d in self._call("C-FIND", lambda: self._find(q))]
        records: list[SeriesRecord] = []
        for uid in study_uids:
            wanted = {
                "Modality": "",
                "SeriesInstanceUID": "",
                "SeriesNumber": "",
                "SeriesDescription": "",
                "NumberOfSeriesRelatedInstances": "",
                **series,
                "StudyInstanceUID": uid,
            }
            query = _query("SERIES", wanted)
            found: list[Dataset] = self._call("C-FIND", partial(self._find, query))
            for d in found:
                count = str(d.get("NumberOfSeriesRelatedInstances", "") or "").strip()
                records.append(
                    SeriesRecord(
                        study_uid=uid,
                        series_uid=str(d.get("SeriesInstanceUID", "")),
                        modality=str(d.get("Modality", "")),
                        instances=int(count) if count.isdigit() else None,
                        series_number=str(d.get("SeriesNumber", "") or ""),
                        description=str(d.get("SeriesDescription", "") or ""),
                    )
                )
        return records

    def _find(self, query: Dataset) -> list[Dataset]:
        found: list[Dataset] = []
        with self._association([(FIND, _TRANSFER)]) as assoc:
            for status, identifier in assoc.send_c_find(query, FIND):
                if not status:  # pynetdicom yields an empty status when the association ended
                    raise _Aborted("the association was aborted during C-FIND")
                if status.Status in (0xFF00, 0xFF01) and identifier is not None:
                    found.append(identifier)
                elif status.Status not in (0x0000, 0xFF00, 0xFF01):
                    raise ArchiveError(f"{self.url.display()}: C-FIND failed with status 0x{status.Status:04X}")
        return found

    def fetch_series(self, record: SeriesRecord, folder: Path) -> int:
        """C-GET the series; each instance the archive sends is written to ``folder``."""
        return int(self._call("C-GET", lambda: self._get(record, folder)))

    def _get(self, record: SeriesRecord, folder: Path) -> int:
        received: list[str] = []

        def on_store(event: Any) -> int:
            uid = str(event.request.AffectedSOPInstanceUID)
            try:  # written as received: decoding and encoding it again cost more than the transfer
                write_encoded(event.encoded_dataset(), folder, uid)
            except Exception as exc:  # the archive is told, and the count check below reports the loss
                logger.warning("C-GET: an instance of the series could not be written: %s", type(exc).__name__)
                return 0xA700
            received.append(uid)
            return 0x0000

        contexts = [(GET, _TRANSFER), *((sop, _TRANSFER) for sop in IMAGE_STORAGE)]
        roles = [build_role(sop, scp_role=True) for sop in IMAGE_STORAGE]
        q = _query("SERIES", {"StudyInstanceUID": record.study_uid, "SeriesInstanceUID": record.series_uid})
        with self._association(contexts, roles, [(evt.EVT_C_STORE, on_store)]) as assoc:
            last = None
            for status, _ in assoc.send_c_get(q, GET):
                if not status:  # pynetdicom yields an empty status when the association ended
                    raise _Aborted("the association was aborted during C-GET")
                last = status.Status
            if last not in (0x0000, 0xB000, None) and not received:
                raise ArchiveError(f"{self.url.display()}: C-GET failed with status 0x{last:04X}")
        return len(set(received))

    def store(self, files: Sequence[Path]) -> None:
        """C-STORE every file in one association (contexts from the files' SOP classes and transfer syntaxes)."""
        datasets = [pydicom.dcmread(f) for f in files]
        contexts: dict[str, set[str]] = {}
        for ds in datasets:
            contexts.setdefault(str(ds.SOPClassUID), set(_TRANSFER)).add(str(ds.file_meta.TransferSyntaxUID))

        def send() -> None:
            with self._association([(k, sorted(v)) for k, v in contexts.items()]) as assoc:
                for ds in datasets:
                    status = assoc.send_c_store(ds)
                    if not status:
                        raise _Aborted("the association was aborted during C-STORE")
                    if status.Status not in (0x0000, 0xB000, 0xB007, 0xB006):
                        raise ArchiveError(
                            f"{self.url.display()}: C-STORE of a {ds.get('Modality', 'DICOM')} object failed with "
                            f"status 0x{status.Status:04X}"
                        )

        self._call("C-STORE", send)


def _query(level: str, attributes: Mapping[str, str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for key, value in attributes.items():
        setattr(ds, key, value)
    return ds
