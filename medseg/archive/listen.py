"""``medseg listen``: a DICOM storage SCP that segments every complete series it receives.

Received instances go to ``OUT/.incoming/<SeriesInstanceUID>/`` (one file per instance, renamed
into place when complete). A series is complete when no instance of it arrived for ``settle_s``
seconds; complete series then run one at a time through the batch engine (outputs, provenance and
``report.*`` in ``OUT``, exactly as ``medseg predict``), their DICOM outputs are sent on when a
target is given, and the series folder moves to ``OUT/.processed/`` (or ``OUT/.failed/``).
The queue is the set of folders under ``.incoming`` (``queue.json`` there lists them for people):
a listener started again picks up every series it had received and not yet processed.

A series is never complete while an association that delivered instances of it is still open. When
such an association is aborted (A-ABORT, or the connection dropped), the series is held (a ``.held``
note in its folder): a later association that delivers instances of it and ends with a normal release
lifts the hold (the sender re-sent it); otherwise, once settled, it is reported as a failed case and
moved to ``OUT/.incomplete/``, never segmented. Instances of it that arrive later bring it back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pydicom
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from medseg.archive.client import NON_IMAGE_MODALITIES, Archive
from medseg.archive.store import remove_partial, uid_name, write_instance
from medseg.batch import BatchReport, Case, CaseProcessor, CaseResult, run_batch
from medseg.batch.provenance import now_iso
from medseg.errors import OutputError
from medseg.io import write_text_atomic

logger = logging.getLogger(__name__)

INCOMING, PROCESSED, FAILED, INCOMPLETE = ".incoming", ".processed", ".failed", ".incomplete"
#: The note in a series folder that an association delivering it was aborted (JSON: who, how many, when).
HELD = ".held"


@dataclasses.dataclass
class ListenerConfig:
    """How the listener listens.

    Attributes:
        host, port: the address to listen on (127.0.0.1 unless told otherwise).
        ae_title: its AE title.
        allow: calling AE titles accepted (None = any); others are rejected at association.
        settle_s: seconds without a new instance after which a series counts as complete, s.
        ssl_context: TLS server context, or None for plain DIMSE.
    """

    host: str = "127.0.0.1"
    port: int = 11112
    ae_title: str = "MEDSEG"
    allow: Sequence[str] | None = None
    settle_s: float = 10.0
    ssl_context: Any = None


class Listener:
    """Receive series over C-STORE and run each complete one through ``processor`` (see the module doc)."""

    def __init__(
        self,
        config: ListenerConfig,
        processor: CaseProcessor,
        out_dir: Path,
        *,
        send: Archive | None = None,
        on_case: Callable[[CaseResult], None] | None = None,
    ) -> None:
        self.config = config
        self.processor = processor
        self.out = Path(out_dir).absolute()
        self.incoming = self.out / INCOMING
        self.send = send
        self.on_case = on_case
        self.rows: list[CaseResult] = []
        self.not_images: list[tuple[str, str]] = []
        self._last: dict[str, float] = {}  # series folder name -> monotonic time of its last instance
        self._delivered: dict[Any, dict[str, int]] = {}  # open association -> series name -> instances
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._handling = False
        self.stopped_by: str | None = None
        self._server: Any = None

    # --- receiving ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the SCP in background threads (``block=False``).

        Raises:
            OutputError: the output folder cannot be created.
            OSError: the port is taken or cannot be bound.
        """
        try:
            self.incoming.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.out}: cannot create the output folder: {exc.strerror or exc}") from exc
        removed = remove_partial(self.incoming)
        if removed:
            logger.info("removed %d half-received instance(s) of an earlier run", removed)
        now = time.monotonic()
        for folder in self.pending():  # series received before a restart: settle from now
            self._last[folder.name] = now
        ae = AE(ae_title=self.config.ae_title)
        ae.require_calling_aet = list(self.config.allow or [])
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 60
        ae.maximum_associations = 8
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        self._server = ae.start_server(
            (self.config.host, self.config.port),
            block=False,
            ssl_context=self.config.ssl_context,
            evt_handlers=[
                (evt.EVT_C_STORE, self._on_store),
                (evt.EVT_RELEASED, self._on_released),
                (evt.EVT_ABORTED, self._on_aborted),
            ],
        )
        logger.info("listening as %s on %s:%d", self.config.ae_title, self.config.host, self.config.port)

    def _on_store(self, event: Any) -> int:
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            name = uid_name(str(ds.SeriesInstanceUID))
            with self._lock:  # before the folder exists, so the series never looks settled while it arrives
                self._last[name] = time.monotonic()
                delivered = self._delivered.setdefault(event.assoc, {})
                delivered[name] = delivered.get(name, 0) + 1
                self._bring_back(name)
            write_instance(ds, self.incoming / name)
        except Exception as exc:  # told to the sender (status A700 = out of resources / cannot process)
            logger.warning(
                "an instance from %s could not be stored: %s", event.assoc.requestor.ae_title, type(exc).__name__
            )
            return 0xA700
        with self._lock:
            self._last[name] = time.monotonic()
        return 0x0000

    def _bring_back(self, name: str) -> None:
        """Move a series reported incomplete back into the queue when more of it arrives (lock held)."""
        earlier, folder = self.out / INCOMPLETE / name, self.incoming / name
        if earlier.is_dir() and not folder.exists():
            earlier.rename(folder)
            logger.info("series %s: more instances arrive; its earlier ones are back in the queue", name)

    def _on_released(self, event: Any) -> None:
        """An association ended normally: the series it delivered are no longer held."""
        with self._lock:
            delivered = self._delivered.pop(event.assoc, {})
        for name in delivered:
            note = self.incoming / name / HELD
            if note.exists():
                note.unlink()
                logger.info("series %s: received again over a completed association; no longer held", name)

    def _on_aborted(self, event: Any) -> None:
        """An association was aborted: every series it delivered is held (see the module doc)."""
        with self._lock:
            delivered = self._delivered.pop(event.assoc, {})
        calling = str(event.assoc.requestor.ae_title).strip()
        for name, count in delivered.items():
            if not (self.incoming / name).is_dir():  # nothing of it was stored: nothing to hold
                continue
            note = {"calling_ae": calling, "instances": count, "at": now_iso()}
            write_text_atomic(self.incoming / name / HELD, json.dumps(note) + "\n")
            logger.warning(
                "series %s: the association from %s was aborted after %d instance(s) of it; held", name, calling, count
            )

    def pending(self) -> list[Path]:
        """The series folders waiting under ``OUT/.incoming``, oldest first."""
        if not self.incoming.is_dir():
            return []
        folders = [p for p in self.incoming.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted(folders, key=lambda p: p.stat().st_mtime)

    def complete(self) -> list[Path]:
        """The pending series that received nothing for ``settle_s`` seconds and no open association delivers."""
        now = time.monotonic()
        with self._lock:
            arriving = {name for delivered in self._delivered.values() for name in delivered}
            return [
                p
                for p in self.pending()
                if p.name not in arriving and now - self._last.get(p.name, 0.0) >= self.config.settle_s
            ]

    def _write_queue(self) -> None:
        now = time.monotonic()
        with self._lock:
            queue = [
                {
                    "series": p.name,
                    "instances": sum(1 for f in p.iterdir() if f.suffix == ".dcm"),
                    "quiet_s": round(now - self._last.get(p.name, now), 1),
                }
                for p in self.pending()
            ]
        write_text_atomic(
            self.incoming / "queue.json", json.dumps({"updated": now_iso(), "pending": queue}, indent=2) + "\n"
        )

    # --- processing -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[None]:
        """While the block runs, SIGINT/SIGTERM ask the listener to stop (:meth:`stop`) instead of killing it.

        Enter it before :meth:`start`, so a signal that arrives while the server starts is not lost; nested
        use is a no-op, and outside the main thread Python allows no handlers.
        """
        if self._handling or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, lambda num, _f: self.stop(signal.Signals(num).name))
        self._handling = True
        try:
            yield
        finally:
            self._handling = False
            for s, handler in previous.items():
                signal.signal(s, handler)

    def serve(self, poll_s: float = 0.5) -> None:
        """Process complete series until SIGINT/SIGTERM (or :meth:`stop`); the current case finishes first."""
        with self.handling_signals():
            try:
                while not self._stop.is_set():
                    self._write_queue()
                    for folder in self.complete():
                        self.process(folder)
                        if self._stop.is_set():
                            break
                    self._stop.wait(poll_s)
            finally:
                self.shutdown()

    def stop(self, why: str = "stop") -> None:
        """Ask :meth:`serve` to return after the current case."""
        self.stopped_by = self.stopped_by or why
        self._stop.set()

    def shutdown(self) -> None:
        """Stop the SCP (associations in progress are closed); received series stay queued."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def process(self, folder: Path) -> CaseResult | None:
        """Run one complete series through the batch engine, send its DICOM outputs, move the folder away."""
        name = folder.name
        if (folder / HELD).exists():
            return self._report_incomplete(folder)
        what = _non_image(folder)
        if what:
            self.not_images.append((name, f"{what}, not an image series; not segmented"))
            logger.info("series %s: %s, not segmented", name, what)
            self._retire(folder, PROCESSED)
            self._write_report()
            return None
        case = Case(name, (folder,), extra={"series_uid": name})
        report = run_batch([case], self.processor, self.out, progress=False)
        if report.interrupted:
            self.stop(report.interrupted)
        if not report.rows:
            return None  # stopped before the case ran: it stays queued
        if self.send is not None:
            from medseg.archive.send import send_results

            report = send_results(report, self.send, self.out)
        row = report.rows[0]
        self.rows = [r for r in self.rows if r.case_id != row.case_id] + [row]
        self._retire(folder, FAILED if row.status == "failed" and not row.error.startswith("sending") else PROCESSED)
        self._write_report()
        if self.on_case is not None:
            self.on_case(row)
        return row

    def _report_incomplete(self, folder: Path) -> CaseResult:
        """A held series that settled without being completed: a failed row, the folder to ``.incomplete``."""
        note = json.loads((folder / HELD).read_text())
        count = sum(1 for f in folder.iterdir() if f.suffix == ".dcm")
        error = (
            f"ArchiveError: series {folder.name}: the association from {note['calling_ae']} was aborted after "
            f"{note['instances']} instance(s) of it ({count} received in all) and no later association completed "
            f"it within --settle {self.config.settle_s:g} s; not segmented (re-send the whole series)"
        )
        row = CaseResult(folder.name, "failed", error=error)
        self.rows = [r for r in self.rows if r.case_id != row.case_id] + [row]
        logger.warning("%s", error.removeprefix("ArchiveError: "))
        self._retire(folder, INCOMPLETE)
        self._write_report()
        if self.on_case is not None:
            self.on_case(row)
        return row

    def _retire(self, folder: Path, where: str) -> None:
        target = self.out / where / folder.name
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            folder.rename(target)
            self._last.pop(folder.name, None)

    def _write_report(self) -> None:
        report = BatchReport(
            rows=sorted(self.rows, key=lambda r: r.case_id),
            executor="listen",
            skipped_inputs=list(self.not_images),
            planned=len(self.rows),
        )
        report.write(self.out, "report")


def _non_image(folder: Path) -> str:
    """What the series is when it is not an image series (SR, PR, ...), else ``""``."""
    for f in sorted(folder.glob("*.dcm")):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["Modality", "SOPClassUID", "Rows"])
        except (pydicom.errors.InvalidDicomError, OSError, ValueError):
            continue
        modality = str(ds.get("Modality", "")).upper()
        if modality in NON_IMAGE_MODALITIES:
            return NON_IMAGE_MODALITIES[modality]
        return "" if "Rows" in ds else f"a '{modality or 'modality-less'}' object without pixel data"
    return "nothing readable"


ALL_TRANSFER_SYNTAXES = [
    pydicom.uid.ExplicitVRLittleEndian,
    pydicom.uid.ImplicitVRLittleEndian,
    pydicom.uid.DeflatedExplicitVRLittleEndian,
    pydicom.uid.ExplicitVRBigEndian,
    pydicom.uid.JPEGBaseline8Bit,
    pydicom.uid.JPEGExtended12Bit,
    pydicom.uid.JPEGLosslessSV1,
    pydicom.uid.JPEGLossless,
    pydicom.uid.JPEGLSLossless,
    pydicom.uid.JPEG2000Lossless,
    pydicom.uid.JPEG2000,
    pydicom.uid.RLELossless,
]
