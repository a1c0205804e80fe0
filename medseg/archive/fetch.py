"""Archive → cases: find the series, fetch each complete image series into a cache folder, name the cases.

Each image series is one case whose image is its cache folder ``CACHE/<SeriesInstanceUID>/``, read
by medseg's DICOM reader like any folder on disk. A series is fetched into a hidden
``.partial-<uid>`` folder and renamed into place only when the archive sent as many instances
as it counts (NumberOfSeriesRelatedInstances), so a half-received series is never segmented;
a complete cache folder is reused by the next run without fetching again.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from medseg.archive.client import Archive, ArchiveUnreachable, SeriesRecord
from medseg.archive.store import uid_name
from medseg.batch.cases import Case, CaseList, dicom_case_ids
from medseg.errors import InputError, MedsegError

logger = logging.getLogger(__name__)


def archive_cases(
    archive: Archive,
    cache: Path,
    *,
    study: Mapping[str, str] | None = None,
    series: Mapping[str, str] | None = None,
    case_ids: str = "folder",
    parallel: int = 2,
) -> CaseList:
    """The cases of the archive's series matching the filters, fetched into ``cache``.

    Args:
        archive: where the series are (:func:`medseg.archive.client.connect`).
        cache: folder of fetched series, one sub-folder per SeriesInstanceUID.
        study, series: DICOM keyword → value filters at the study and series level
            (:func:`medseg.archive.client.split_filters`).
        case_ids: ``folder`` (default: the SeriesInstanceUID, stable and free of patient
            identifiers), or ``patient``/``series`` as for DICOM folders
            (:func:`medseg.batch.cases.dicom_case_ids`).
        parallel: series fetched at the same time.

    Returns:
        The cases, with non-image series (SR, PR, RTDOSE, SEG, RTSTRUCT, ...) in ``skipped`` and
        series that could not be fetched completely in ``failed`` (each with one reason).

    Raises:
        ArchiveUnreachable: the archive does not answer the search.
        InputError: no series matches the filters.
    """
    records = archive.find_series(dict(study or {}), dict(series or {}))
    if not records:
        shown = ", ".join(f"{k}={v}" for k, v in {**(study or {}), **(series or {})}.items()) or "none"
        raise InputError(
            f"{archive.url.display()}: no series matches the filters ({shown}); check --filter/--study/--series"
        )
    skipped = [
        (Path(uid_name(r.series_uid)), f"{r.what()}, not an image series; not segmented")
        for r in records
        if not r.is_image
    ]
    images = [r for r in records if r.is_image]
    cache.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        outcomes = list(pool.map(lambda r: _fetch_one(archive, r, cache), images))
    folders = [(r, out) for r, out in zip(images, outcomes) if isinstance(out, Path)]
    failed = [(uid_name(r.series_uid), out) for r, out in zip(images, outcomes) if isinstance(out, str)]
    ids = dicom_case_ids([f for _, f in folders], rule=case_ids)
    cases = [Case(cid, (folder,), extra={"series_uid": r.series_uid}) for cid, (r, folder) in zip(ids, folders)]
    return CaseList(sorted(cases, key=lambda c: c.case_id), skipped, failed)


def _fetch_one(archive: Archive, record: SeriesRecord, cache: Path) -> Path | str:
    """The complete cache folder of ``record``, or why it could not be fetched (one line)."""
    name = uid_name(record.series_uid)
    final = cache / name
    if final.is_dir() and record.instances is not None and _count(final) == record.instances:
        logger.info("series %s: %d instances already fetched", name, record.instances)
        return final
    partial = cache / f".partial-{name}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        n = archive.fetch_series(record, partial)
    except Exception as exc:  # one series that cannot be fetched is one failed case; the others go on
        shutil.rmtree(partial, ignore_errors=True)
        why = str(exc) if isinstance(exc, (ArchiveUnreachable, MedsegError)) else f"{type(exc).__name__}: {exc}"
        return f"fetching series {name} from {archive.url.display()} failed: {why}"
    got = _count(partial)
    if record.instances is not None and got != record.instances:
        shutil.rmtree(partial, ignore_errors=True)
        return (
            f"series {name}: received {got} of the {record.instances} instances {archive.url.display()} lists; "
            "not segmented (re-run when the archive holds the whole series)"
        )
    if got == 0:
        return f"series {name}: {archive.url.display()} sent no instance ({n} reported); not segmented"
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return final


def _count(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file() and p.suffix == ".dcm" and not p.name.startswith("."))
