"""Executors: how the cases of a batch are scheduled.

- ``inprocess``: one case after another, all stages in the calling thread.
- ``overlap``: a bounded pipeline on one machine — loader threads read and pre-process the
  next ``prefetch`` cases while the calling thread runs the current one, and a writer thread
  saves the previous one. Only the calling thread calls ``processor.run``, so one process
  owns the GPU.
- ``dask``: every case is one Dask task (on a ``LocalCluster`` or an existing scheduler);
  a task whose worker died is retried.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from medseg.batch.cases import Case
from medseg.batch.report import CaseResult
from medseg.batch.signals import Stop
from medseg.batch.stages import BatchContext, CaseState, finish, infer, prepare, process_case, process_case_in_worker
from medseg.errors import ConfigError

logger = logging.getLogger(__name__)

OnResult = Callable[[CaseResult], None]


def run_inprocess(ctx: BatchContext, cases: Sequence[Case], on_result: OnResult, stop: Stop | None = None) -> None:
    """Process the cases one after another in the calling thread, until ``stop`` is set."""
    for case in cases:
        if stop is not None and stop.is_set():
            return
        on_result(process_case(ctx, case))


def run_overlap(
    ctx: BatchContext,
    cases: Sequence[Case],
    on_result: OnResult,
    stop: Stop | None = None,
    *,
    prefetch: int = 2,
    loaders: int = 1,
) -> None:
    """Load the next cases and save the previous one while the current one runs; once ``stop`` is
    set no new case is loaded or run, and the cases already run are saved.

    Args:
        prefetch: how many loaded (or loading) cases may wait for the runner; bounds memory.
        loaders: loader threads.
    """
    pending_loads: deque[Future[CaseState | CaseResult]] = deque()
    pending_saves: deque[Future[CaseResult]] = deque()
    todo = iter(cases)

    def fill(pool: ThreadPoolExecutor) -> None:
        while len(pending_loads) < prefetch and not (stop is not None and stop.is_set()):
            case = next(todo, None)
            if case is None:
                return
            pending_loads.append(pool.submit(prepare, ctx, case))

    with (
        ThreadPoolExecutor(max_workers=loaders, thread_name_prefix="medseg-load") as load_pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="medseg-save") as save_pool,
    ):
        try:
            fill(load_pool)
            while pending_loads and not (stop is not None and stop.is_set()):
                state = pending_loads.popleft().result()
                fill(load_pool)
                if isinstance(state, CaseResult):
                    on_result(state)
                    continue
                state = infer(ctx, state)
                if isinstance(state, CaseResult):
                    on_result(state)
                    continue
                while pending_saves and (pending_saves[0].done() or len(pending_saves) >= prefetch):
                    on_result(pending_saves.popleft().result())
                pending_saves.append(save_pool.submit(finish, ctx, state))
            while pending_saves:
                on_result(pending_saves.popleft().result())
        except BaseException:
            for load in pending_loads:
                load.cancel()
            for save in pending_saves:
                save.cancel()
            raise


def run_dask(
    ctx: BatchContext,
    cases: Sequence[Case],
    on_result: OnResult,
    stop: Stop | None = None,
    *,
    workers: int | None = None,
    scheduler: object | None = None,
    retries: int = 2,
) -> None:
    """Run each case as a Dask task and report results as they complete.

    Args:
        workers: worker processes of the ``LocalCluster`` made when ``scheduler`` is None
            (default: the CPU count); each has one thread.
        scheduler: address of a running scheduler (``"tcp://host:8786"``; the connection
            timeout is Dask's ``distributed.comm.timeouts.connect``), or an existing ``distributed.Client``.
        retries: how often a task whose worker was lost is tried again.
    """
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise ConfigError("executor 'dask' needs the 'distributed' package: pip install 'dask[distributed]'") from exc

    cluster = None
    owns_client = True
    if isinstance(scheduler, Client):
        client, owns_client = scheduler, False
    elif scheduler is not None:
        try:
            client = Client(str(scheduler))
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {scheduler} ({exc}); start one with 'dask scheduler' "
                "and check the address"
            ) from exc
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        ctx_future = client.scatter(ctx, broadcast=True, hash=False)
        run_token = uuid.uuid4().hex[:8]
        futures = {}
        for case in cases:
            fut = client.submit(
                process_case_in_worker,
                ctx_future,
                case,
                key=f"medseg-case-{case.case_id}-{run_token}",
                pure=False,
                retries=retries,
            )
            futures[fut] = case
        for fut in as_completed(futures):
            if stop is not None and stop.is_set():  # cases running on workers finish there; the rest never start
                client.cancel([f for f in futures if not f.done()])
                break
            case = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:  # the task itself catches case errors: this is a lost worker
                result = CaseResult(
                    case.case_id, "failed", f"worker lost: {type(exc).__name__}: {exc} (after {retries} retries)"
                )
            on_result(result)
    finally:
        if owns_client:
            client.close()
        if cluster is not None:
            cluster.close()
