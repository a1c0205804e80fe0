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
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from medseg.archive.client import Archive, ArchiveUnreachable, SeriesRecord, TransferAborted
from medseg.archive.store import uid_name
from medseg.batch.cases import Case, CaseList, dicom_case_ids
from medseg.batch.processor import CaseProcessor, describe_processor
from medseg.errors import ArchiveError, InputError, MedsegError

logger = logging.getLogger(__name__)


def find_image_series(
    archive: Archive, study: Mapping[str, str] | None = None, series: Mapping[str, str] | None = None
) -> tuple[list[SeriesRecord], list[tuple[Path, str]]]:
    """The image series matching the filters, and ``(uid, reason)`` for the non-image ones (SR, PR, ...).

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
    return [r for r in records if r.is_image], skipped


def archive_cases(
    archive: Archive,
    cache: Path,
    *,
    study: Mapping[str, str] | None = None,
    series: Mapping[str, str] | None = None,
    case_ids: str = "folder",
    parallel: int = 2,
) -> CaseList:
    """The cases of the archive's series matching the filters, all fetched into ``cache`` before returning.

    Args:
        archive: where the series are (:func:`medseg.archive.client.connect`).
        cache: folder of fetched series, one sub-folder per SeriesInstanceUID.
        study, series: DICOM keyword → value filters at the study and series level
            (:func:`medseg.archive.client.split_filters`).
        case_ids: ``folder`` (default: the SeriesInstanceUID, stable and free of patient
            identifiers), or ``patient``/``series`` as for DICOM folders
            (:func:`medseg.batch.cases.dicom_case_ids`), which read the fetched headers.
        parallel: series fetched at the same time.

    Returns:
        The cases, with non-image series (SR, PR, RTDOSE, SEG, RTSTRUCT, ...) in ``skipped`` and
        series that could not be fetched completely in ``failed`` (each with one reason).

    Raises:
        ArchiveUnreachable: the archive does not answer the search.
        InputError: no series matches the filters.
    """
    images, skipped = find_image_series(archive, study, series)
    cache.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        outcomes = list(pool.map(lambda r: _fetch_one(archive, r, cache), images))
    folders = [(r, out) for r, out in zip(images, outcomes) if isinstance(out, Path)]
    failed = [(uid_name(r.series_uid), out) for r, out in zip(images, outcomes) if isinstance(out, str)]
    ids = dicom_case_ids([f for _, f in folders], rule=case_ids)
    cases = [Case(cid, (folder,), extra={"series_uid": r.series_uid}) for cid, (r, folder) in zip(ids, folders)]
    return CaseList(sorted(cases, key=lambda c: c.case_id), skipped, failed)


class SeriesPrefetch:
    """Fetches series into a cache in background threads, in case order, while earlier cases run.

    Cases are named by SeriesInstanceUID (known before any file arrives); :meth:`wait` blocks
    until a case's series is complete in the cache, or raises why it cannot be.
    """

    def __init__(self, archive: Archive, cache: Path, records: list[SeriesRecord], *, parallel: int = 2) -> None:
        cache.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="medseg-fetch")
        ordered = sorted(records, key=lambda r: uid_name(r.series_uid))
        self._futures: dict[str, Future[Path | str]] = {
            uid_name(r.series_uid): self._pool.submit(_fetch_one, archive, r, cache) for r in ordered
        }

    def wait(self, case: Case) -> None:
        """Return once ``case``'s series is in the cache (immediately for cases not fetched here).

        Raises:
            ArchiveError: the series could not be fetched completely (the reason in one line).
        """
        future = self._futures.get(case.case_id)
        if future is None:
            return
        outcome = future.result()
        if isinstance(outcome, str):
            raise ArchiveError(outcome)

    def close(self) -> None:
        """Stop fetching: queued series are cancelled, the ones in progress finish."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def prefetch_cases(
    archive: Archive,
    cache: Path,
    *,
    study: Mapping[str, str] | None = None,
    series: Mapping[str, str] | None = None,
    parallel: int = 2,
    part: tuple[int, int] = (0, 1),
) -> tuple[CaseList, SeriesPrefetch]:
    """The cases of the matching image series at once (named by SeriesInstanceUID), and the prefetch that
    fills ``cache`` with them in the background; wrap the processor in :class:`FetchingProcessor`.
    ``part=(part_id, num_parts)`` fetches only the series of that shard (:func:`medseg.batch.select_part`).

    Raises:
        ArchiveUnreachable: the archive does not answer the search.
        InputError: no series matches the filters.
    """
    from medseg.batch.engine import select_part

    images, skipped = find_image_series(archive, study, series)
    cases = [
        Case(uid_name(r.series_uid), (cache / uid_name(r.series_uid),), extra={"series_uid": r.series_uid})
        for r in images
    ]
    mine = {c.case_id for c in select_part(cases, part[1], part[0])}  # a shard fetches only its own series
    wanted = [r for r in images if uid_name(r.series_uid) in mine]
    return CaseList(sorted(cases, key=lambda c: c.case_id), skipped), SeriesPrefetch(
        archive, cache, wanted, parallel=parallel
    )


class FetchingProcessor:
    """A :class:`medseg.batch.CaseProcessor` whose cases' inputs arrive from an archive: the batch engine calls
    :meth:`prepare_inputs` before hashing a case, which waits for its series; the rest is ``inner``'s."""

    def __init__(self, inner: CaseProcessor, prefetch: SeriesPrefetch) -> None:
        self.inner = inner
        self.prefetch = prefetch

    def prepare_inputs(self, case: Case) -> None:
        """Wait until the case's series is complete in the cache (raises when it cannot be)."""
        self.prefetch.wait(case)

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def load(self, case: Case) -> Any:
        return self.inner.load(case)

    def run(self, loaded: Any) -> Any:
        return self.inner.run(loaded)

    def save(self, case: Case, result: Any, out_dir: Path) -> dict[str, Path]:
        return self.inner.save(case, result, out_dir)

    def describe(self) -> dict[str, Any]:
        """The inner processor's description (pipeline, model, device)."""
        return describe_processor(self.inner)


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
    except TransferAborted as exc:  # what had arrived is dropped: a re-run fetches the series from the start
        got = _count(partial) if partial.is_dir() else 0
        shutil.rmtree(partial, ignore_errors=True)
        of = f" of {record.instances}" if record.instances is not None else ""
        return f"series {name}: {exc}, {got}{of} instances had arrived; not segmented (re-run to fetch it again)"
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
