"""``run_batch``: many cases, resumable, fault-isolated, with a report and per-case provenance."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from medseg.batch.cases import Case, check_case_id
from medseg.batch.executors import run_dask, run_inprocess, run_overlap
from medseg.batch.processor import CaseProcessor
from medseg.batch.provenance import now_iso
from medseg.batch.report import QC_THRESHOLD, BatchReport, CaseResult
from medseg.batch.signals import stop_on_signals
from medseg.batch.stages import BatchContext, warning_router
from medseg.errors import ConfigError, InputError, OutputError, did_you_mean
from medseg.io.atomic import remove_stale_temps
from medseg.io.lock import folder_lock

logger = logging.getLogger(__name__)

Executor = Literal["inprocess", "overlap", "dask"]
EXECUTORS: tuple[str, ...] = ("inprocess", "overlap", "dask")


def select_part(cases: Sequence[Case], num_parts: int = 1, part_id: int = 0) -> list[Case]:
    """The ``part_id``-th of ``num_parts`` shards: cases sorted by id, every ``num_parts``-th from ``part_id``.

    Deterministic, so independent jobs (a SLURM array) given the same source split it the same way
    and cover every case exactly once.

    Raises:
        ConfigError: ``num_parts < 1`` or ``part_id`` outside ``0..num_parts-1``.
    """
    if not isinstance(num_parts, int) or num_parts < 1:
        raise ConfigError(f"num_parts must be a positive integer, got {num_parts!r}")
    if not isinstance(part_id, int) or not 0 <= part_id < num_parts:
        raise ConfigError(f"part_id must be in 0..{num_parts - 1} for num_parts={num_parts}, got {part_id!r}")
    return sorted(cases, key=lambda c: c.case_id)[part_id::num_parts]


def run_batch(
    cases: Sequence[Case],
    processor: CaseProcessor,
    out_dir: str | Path,
    *,
    executor: Executor = "inprocess",
    workers: int | None = None,
    scheduler: object | None = None,
    force: bool = False,
    num_parts: int = 1,
    part_id: int = 0,
    prefetch: int = 2,
    retries: int = 2,
    progress: bool = True,
    verbose: bool = False,
    qc_threshold: float = QC_THRESHOLD,
) -> BatchReport:
    """Process every case with ``processor``, skipping those already done, isolating failures.

    A case is skipped when ``out_dir/<case_id>.provenance.json`` records the same fingerprint
    (input file hashes + ``processor.fingerprint()`` + medseg version) and all its outputs
    exist; ``force=True`` runs it again. Outputs are written atomically and the provenance
    last, so a run killed at any moment and started again completes the batch with the same
    outputs. A case that raises is recorded as failed and the batch goes on.

    Args:
        cases: the cases (e.g. from :func:`discover_cases`); ids must be unique. The files a
            :class:`CaseList` skipped are listed in the report.
        processor: the work per case (:class:`CaseProcessor`).
        out_dir: output folder (created); outputs, sidecars and the report go there.
        executor: ``inprocess`` (one case at a time), ``overlap`` (load/save of other cases
            overlaps the current run; one thread calls ``run``) or ``dask``.
        workers: loader threads for ``overlap`` (default 1); worker processes of the Dask
            ``LocalCluster`` (default: CPU count).
        scheduler: Dask scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``;
            only with ``executor="dask"``.
        force: run every case again, even when done.
        num_parts: split the batch into this many parts (independent jobs) ...
        part_id: ... and process this one (0-based); see :func:`select_part`.
        prefetch: cases loaded ahead of the runner (``overlap``), bounds memory.
        retries: Dask retries of a case whose worker was lost.
        progress: show a progress bar (cases done/failed, ETA) on stderr.
        verbose: print one line per finished case on stderr.
        qc_threshold: ``qc_score`` from which the report counts a case as needing review (in [0, 1]).

    Returns:
        The :class:`BatchReport`, also written as ``report.csv``/``report.json``/``report.html``
        (``report.part<I>of<K>.*`` when sharded). ``report.exit_code`` is 0 when nothing failed.

    Raises:
        ConfigError: unknown executor or invalid option.
        ConfigError: the output folder is the folder holding the inputs.
        InputError: duplicate case ids.
        OutputError: the output folder cannot be created.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor '{executor}'{did_you_mean(str(executor), EXECUTORS)}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if not isinstance(prefetch, int) or prefetch < 1:
        raise ConfigError(f"prefetch must be a positive integer, got {prefetch!r}")
    if not 0.0 <= qc_threshold <= 1.0:
        raise ConfigError(f"qc_threshold must be in [0, 1], got {qc_threshold!r}")
    if scheduler is not None and executor != "dask":
        raise ConfigError(f"a scheduler is only used with executor='dask', not '{executor}'")
    _check_unique(cases)
    selected = select_part(cases, num_parts, part_id)
    out = Path(out_dir).absolute()  # save() joins its names to it: a relative path would be joined twice
    _check_not_input_folder(selected, out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder: {exc.strerror or exc}") from exc
    with folder_lock(out, (part_id, num_parts)) as alone:
        if alone:  # nobody else writes here: what an interrupted run left half-written can go
            remove_stale_temps(out)
        return _run_locked(
            cases, selected, processor, out, executor, workers, scheduler, force, num_parts, part_id, prefetch,
            retries, progress, verbose, qc_threshold,
        )  # fmt: skip


def _run_locked(
    cases: Sequence[Case],
    selected: list[Case],
    processor: CaseProcessor,
    out: Path,
    executor: Executor,
    workers: int | None,
    scheduler: object | None,
    force: bool,
    num_parts: int,
    part_id: int,
    prefetch: int,
    retries: int,
    progress: bool,
    verbose: bool,
    qc_threshold: float = QC_THRESHOLD,
) -> BatchReport:
    """:func:`run_batch` once the output folder is held: run the cases until done or stopped by a signal."""
    ctx = BatchContext(processor, out, str(processor.fingerprint()), force)

    results: dict[str, CaseResult] = {}
    live = progress and sys.stderr.isatty()  # into a log file: one line per case instead of bar frames
    bar = tqdm(total=len(selected), unit="case", file=sys.stderr, disable=not live, dynamic_ncols=True)

    def on_result(result: CaseResult) -> None:
        results[result.case_id] = result
        if result.status == "failed":
            logger.warning("case %s failed: %s", result.case_id, result.error)
        if verbose or (progress and not live):
            line = f"{result.case_id}: {result.status} ({result.seconds:.1f} s)"
            line += "" if live else f" [{len(results)}/{len(selected)}]"
            tqdm.write(line + (f" {result.error}" if result.error else ""), file=sys.stderr)
        bar.update(1)
        bar.set_postfix(
            ok=sum(r.status == "succeeded" for r in results.values()),
            skipped=sum(r.status == "skipped" for r in results.values()),
            failed=sum(r.status == "failed" for r in results.values()),
            refresh=False,
        )

    started, t0 = now_iso(), time.perf_counter()
    with stop_on_signals() as stop:
        try:
            with warning_router():
                if executor == "inprocess":
                    run_inprocess(ctx, selected, on_result, stop)
                elif executor == "overlap":
                    run_overlap(ctx, selected, on_result, stop, prefetch=prefetch, loaders=workers or 1)
                else:
                    run_dask(ctx, selected, on_result, stop, workers=workers, scheduler=scheduler, retries=retries)
        except KeyboardInterrupt:  # a second Ctrl-C: the current case is abandoned (its temp files are gone)
            stop.signal = stop.signal or "SIGINT"
        finally:
            bar.close()
    # cases the source could not provide (an incomplete archive series, ...): reported once, by part 0
    unavailable = [CaseResult(cid, "failed", why) for cid, why in getattr(cases, "failed", []) if part_id == 0]
    report = BatchReport(
        rows=sorted(
            [*(results[c.case_id] for c in selected if c.case_id in results), *unavailable], key=lambda r: r.case_id
        ),
        executor=executor,
        seconds=time.perf_counter() - t0,
        started=started,
        part=(part_id, num_parts),
        skipped_inputs=[(str(p), why) for p, why in getattr(cases, "skipped", [])],
        interrupted=stop.signal,
        planned=len(selected) + len(unavailable),
        qc_threshold=qc_threshold,
    )
    report.write(out, "report" if num_parts == 1 else f"report.part{part_id}of{num_parts}")
    logger.debug("%s", report.summary())  # the CLI prints its own summary
    return report


def _check_unique(cases: Sequence[Case]) -> None:
    seen: dict[str, Case] = {}
    for case in cases:
        check_case_id(case.case_id)
        if case.case_id in seen:
            names = [", ".join(p.name for p in c.images) for c in (seen[case.case_id], case)]
            raise InputError(
                f"two cases share the id '{case.case_id}' ({names[0]} and {names[1]}); case ids must be unique"
            )
        seen[case.case_id] = case


def _check_not_input_folder(cases: Sequence[Case], out: Path) -> None:
    root = out.resolve()
    for case in cases:
        for p in case.inputs:
            r = p.resolve()
            if r == root or r.parent == root:
                raise ConfigError(
                    f"{out}: the output folder holds the input {p.name} of case '{case.case_id}'; outputs could "
                    "overwrite inputs and be taken for cases next time: choose another output folder"
                )
