"""Push: store each case's DICOM outputs (DICOM SEG, RTSTRUCT) in an archive and record it in the provenance.

The sidecar ``OUT/<case>.provenance.json`` gets a ``sent`` field, keyed by the archive's address
(without credentials)::

    "sent": {"dicomweb+http://pacs:8042/dicom-web": {
        "status": "sent", "at": "2026-01-01T10:00:00+00:00", "via": "STOW-RS",
        "files": [{"path": "x.seg.dcm", "sha256": "..."}]}}

A case whose current DICOM outputs are all recorded as sent to that address is not sent again;
a failed send is recorded (``"status": "failed"`` with the error) and retried by the next run.
The outputs themselves are never touched.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from medseg.archive.client import Archive
from medseg.batch.fingerprint import hash_file
from medseg.batch.provenance import now_iso, read_provenance, write_provenance
from medseg.batch.report import BatchReport, CaseResult
from medseg.io.dicom import is_dicom_file

logger = logging.getLogger(__name__)

SENT_KEY = "sent"


def dicom_outputs(out_dir: Path, record: dict[str, Any]) -> list[dict[str, str]]:
    """``[{"path": rel, "sha256": hex}]`` of the DICOM files among a sidecar's outputs, sorted by path."""
    found = []
    for entry in (record.get("outputs") or {}).values():
        rel = entry.get("path") if isinstance(entry, dict) else None
        if isinstance(rel, str) and (out_dir / rel).is_file() and is_dicom_file(out_dir / rel):
            found.append({"path": rel, "sha256": str(entry.get("sha256") or hash_file(out_dir / rel))})
    return sorted(found, key=lambda e: e["path"])


def already_sent(record: dict[str, Any], address: str, files: list[dict[str, str]]) -> bool:
    """Whether the sidecar records exactly these files (same SHA-256) as sent to ``address``."""
    entry = (record.get(SENT_KEY) or {}).get(address)
    if not isinstance(entry, dict) or entry.get("status") != "sent":
        return False
    return sorted(entry.get("files") or [], key=lambda e: e.get("path", "")) == files


def send_case(archive: Archive, out_dir: Path, case_id: str) -> str:
    """Send the DICOM outputs of one finished case unless already sent; record the outcome.

    Returns:
        ``""`` when sent now, already sent, or the case has no DICOM output; else the error (one line),
        also recorded in the sidecar.
    """
    record = read_provenance(out_dir, case_id)
    if record is None:
        return ""
    address = archive.url.display()
    files = dicom_outputs(out_dir, record)
    if not files:
        return ""
    if already_sent(record, address, files):
        logger.info("case %s: already sent to %s", case_id, address)
        return ""
    via = "STOW-RS" if archive.url.protocol == "dicomweb" else "C-STORE"
    try:
        archive.store([out_dir / f["path"] for f in files])
        entry: dict[str, Any] = {"status": "sent", "at": now_iso(), "via": via, "files": files}
        error = ""
    except Exception as exc:  # recorded in the sidecar and the report; the outputs stay in place
        error = (
            f"sending {', '.join(f['path'] for f in files)} to {address} failed ({_one_line(exc)}); the files "
            "are kept; re-run the same command to retry the send"
        )
        entry = {"status": "failed", "at": now_iso(), "via": via, "error": _one_line(exc), "files": files}
    sent = dict(record.get(SENT_KEY) or {})
    sent[address] = entry
    body = {k: v for k, v in record.items() if k not in ("schema", "case_id")}
    write_provenance(out_dir, case_id, {**body, SENT_KEY: sent})
    return error


def send_results(report: BatchReport, archive: Archive, out_dir: Path) -> BatchReport:
    """Send every succeeded or skipped case of ``report``; a failed send turns its row into ``failed``.

    Returns:
        The report with those rows replaced (the caller writes it again).
    """
    rows: list[CaseResult] = []
    for row in report.rows:
        error = send_case(archive, out_dir, row.case_id) if row.status in ("succeeded", "skipped") else ""
        rows.append(dataclasses.replace(row, status="failed", error=error) if error else row)
    return dataclasses.replace(report, rows=rows)


def _one_line(exc: BaseException) -> str:
    return (
        " ".join(f"{type(exc).__name__}: {exc}".split())
        if not str(exc).startswith(("cannot", "dimse", "dicomweb"))
        else " ".join(str(exc).split())
    )
