"""DICOM archives (PACS) as a case source and an output sink: pull series, push results, listen.

Typical use::

    from medseg.archive import archive_cases, connect, parse_archive_url

    archive = connect(parse_archive_url("dicomweb+http://127.0.0.1:8042/dicom-web"))
    cases = archive_cases(archive, Path("out/.archive"), series={"Modality": "MR"})
    report = run_batch(cases, processor, "out")
    report = send_results(report, archive, Path("out"))

Modules import their protocol libraries (pynetdicom, dicomweb-client) only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medseg.archive.client import Archive, ArchiveUnreachable, SeriesRecord, connect, split_filters
    from medseg.archive.fetch import archive_cases
    from medseg.archive.send import send_results
    from medseg.archive.urls import ArchiveURL, parse_archive_url

_WHERE = {
    "Archive": "client",
    "ArchiveUnreachable": "client",
    "SeriesRecord": "client",
    "connect": "client",
    "split_filters": "client",
    "archive_cases": "fetch",
    "send_results": "send",
    "ArchiveURL": "urls",
    "parse_archive_url": "urls",
}

__all__ = [
    "Archive",
    "ArchiveURL",
    "ArchiveUnreachable",
    "SeriesRecord",
    "archive_cases",
    "connect",
    "parse_archive_url",
    "send_results",
    "split_filters",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'medseg.archive' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"medseg.archive.{_WHERE[name]}"), name)
