"""One training session of a run folder: its lock, clean stops, and what resuming reads and writes.

A fold's run folder (``OUT/fold_K`` or ``OUT/all``) is held by one process at a time
(:func:`medseg.io.lock.folder_lock`), so folds trained in parallel into one ``-o`` keep working
while a second run of the same fold stops at once, naming the first. Temporary files a killed
run left there are removed under the lock. ``last.pt`` is what a session leaves for the next:
it is written after the epoch's log row, so every epoch it claims is in ``log.csv``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.errors import CheckpointError
from medseg.io.atomic import remove_stale_temps
from medseg.io.lock import folder_lock
from medseg.training.checkpoint import Checkpoint, load_checkpoint, rng_state, set_rng_state
from medseg.training.logs import EpochLog

if TYPE_CHECKING:
    from medseg.training.config import TrainingConfig
    from medseg.training.trainer import RunState

log = logging.getLogger(__name__)


def fold_dir(out_dir: Path, fold: int | None) -> Path:
    """The run folder of ``fold`` (None: all cases) under ``out_dir``: ``fold_K`` or ``all``."""
    return out_dir / ("all" if fold is None else f"fold_{fold}")


@contextlib.contextmanager
def hold_run_folder(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for this run (rank 0 under DDP; the other ranks write nothing there) and remove the
    temporary files an interrupted run left in it.

    Raises:
        OutputError: another live run holds the folder (the message names it).
    """
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    with folder_lock(run_dir):
        remove_stale_temps(run_dir)
        yield


def load_last(path: Path, labels: dict[int, str], channels: list[str]) -> Checkpoint:
    """``last.pt`` to resume from; a damaged or foreign one is refused in one line naming ``--restart``.

    Raises:
        CheckpointError: unreadable, damaged, or saved for other labels/channels.
    """
    try:
        return load_checkpoint(path, labels=labels, channels=channels)
    except CheckpointError as exc:
        raise CheckpointError(
            f"cannot resume: {exc}; to start this fold over, run the same 'medseg train' command with --restart "
            "(API: resume=False)"
        ) from exc


def training_state(run: RunState) -> dict[str, Any]:
    """What ``last.pt`` records for resuming (see :class:`medseg.training.checkpoint.Checkpoint`)."""
    return {
        "optimizer": run.optimizer.state_dict(),
        "best": run.best,
        "best_epoch": run.best_epoch,
        "since_best": run.since_best,
        "best_metrics": run.best_metrics,
        "rng": rng_state(),
        "elapsed_s": run.training_s,
        "iterations": run.iterations,
        "validations": run.validations,
    }


def resume(run: RunState, settings: TrainingConfig) -> list[dict[str, Any]]:
    """Load ``last.pt`` into the run (weights, optimiser, best-so-far, RNG, time and iterations);
    returns the log rows of the epochs it holds."""
    ckpt = load_last(run.last_path, run.labels, run.channels)
    run.network.load_state_dict(ckpt.state_dict)
    ts = ckpt.training_state
    run.optimizer.load_state_dict(ts["optimizer"])
    run.start_epoch = ckpt.epoch
    run.best, run.best_epoch, run.since_best = float(ts["best"]), int(ts["best_epoch"]), int(ts["since_best"])
    run.metrics = dict(ckpt.metrics)
    run.best_metrics = dict(ts.get("best_metrics") or {})
    if "rng" in ts:
        set_rng_state(ts["rng"])
    # the budget and the schedule continue where the interrupted session left them (the trainer's clock
    # starts from run.training_s)
    run.training_s = float(ts.get("elapsed_s", 0.0))
    run.iterations = int(ts.get("iterations", ckpt.epoch * settings.iterations_per_epoch))
    run.validations = int(ts.get("validations", 0))
    log.info("resuming %s from epoch %d", run.run_dir, ckpt.epoch)
    # a row after the checkpoint's epoch was logged by a session killed before it saved last.pt: trained again
    return [r for r in EpochLog.read(run.run_dir / "log.csv") if int(r["epoch"]) <= ckpt.epoch]


def interrupted_line(signal_name: str, epochs_done: int, max_epochs: int | None) -> str:
    """The line a stopped run prints: what was kept and how to continue."""
    of = f" of {max_epochs}" if max_epochs is not None else ""
    return (
        f"interrupted ({signal_name}) after epoch {epochs_done}{of} (last.pt holds it); "
        "re-run the same command to continue"
    )
