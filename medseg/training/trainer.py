"""The training engine: cached cases → patches → augmentation → network, with validation,
checkpoints, resume, early stopping, k-fold splits, logs and DDP.

:meth:`Trainer.fit` reads as the run it performs: :meth:`~Trainer._set_up` builds the run state
(:class:`RunState`: cases, split, network, optimiser, loader, logs, resumed progress), then each
epoch is :meth:`~Trainer._train_epoch` followed by :meth:`~Trainer._end_epoch` (validation, best
checkpoint, early stopping, time budget, ``last.pt``, log row), and :meth:`~Trainer._finish`
writes ``metrics.json``. What differs between segmentation and classification is asked of the
run's :mod:`task <medseg.training.task>` object.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from medseg.batch.signals import Stop, stop_on_signals
from medseg.core.device import resolve_device
from medseg.core.memory import reuse_freed_memory
from medseg.core.precision import PrecisionChoice
from medseg.core.volume import Volume
from medseg.errors import ConfigError, InputError
from medseg.io import SPACING_TOLERANCE, write_text_atomic
from medseg.networks import build_network, check_patch_size, network_info
from medseg.qc.summary import training_summary
from medseg.training import distributed as ddp
from medseg.training import session
from medseg.training.cache import CachedCase, CacheStats, callable_key, prepare_dataset
from medseg.training.checkpoint import plain, save_checkpoint
from medseg.training.config import TrainingConfig, TrainResult
from medseg.training.dataset import Dataset, load_dataset
from medseg.training.loader import PatchStream, make_loader
from medseg.training.logs import EpochLog
from medseg.training.optim import lr_factor, set_lr
from medseg.training.splits import load_or_create_splits
from medseg.training.step import training_parts, training_step
from medseg.training.task import Task, task_for

log = logging.getLogger(__name__)

#: Iterations timed before the run says how long the whole plan will take.
PROJECTION_ITERATIONS = 5
#: A projected run longer than this (hours) is announced as a warning, with what to change.
LONG_RUN_HOURS = 24.0


@dataclass
class RunState:
    """Everything one training run reads and updates, built by :meth:`Trainer._set_up`."""

    device: torch.device
    dist: ddp.DistInfo
    run_dir: Path
    train_cases: list[CachedCase]
    val_cases: list[CachedCase]
    labels: dict[int, str]
    channels: list[str]
    options: dict[str, Any]
    network: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    precision: PrecisionChoice
    augment_in_loader: bool
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    epoch_log: EpochLog | None
    bar: tqdm  # type: ignore[type-arg]
    meta: dict[str, Any]
    start_epoch: int = 0
    best: float = -math.inf
    best_epoch: int = -1
    since_best: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    best_metrics: dict[str, Any] = field(default_factory=dict)
    #: clock reading at which the run's training time began (moved back by a resumed run's elapsed time).
    started: float = field(default_factory=lambda: time.perf_counter())
    iterations: int = 0
    validations: int = 0
    #: training time (s) at the end of the last finished epoch (what ``last.pt`` and ``metrics.json`` record).
    training_s: float = 0.0
    #: why the run ended: ``"completed"`` (every epoch of ``max_epochs``), ``"time limit"``, ``"early stopping"``,
    #: ``"SIGINT"``/``"SIGTERM"`` (stopped by a signal: the epoch under way is abandoned, ``last.pt`` kept).
    stopped_by: str = "completed"
    #: set by the first SIGINT/SIGTERM while the run trains.
    stop: Stop = field(default_factory=Stop)

    @property
    def elapsed_s(self) -> float:
        """Training time so far in seconds, earlier sessions of a resumed run included."""
        return time.perf_counter() - self.started

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    def close(self) -> None:
        self.bar.close()
        if self.epoch_log is not None:
            self.epoch_log.close()


class Trainer:
    """Trains one network on a dataset (one fold per call) and writes checkpoints and logs.

    Args:
        network_name: registered network (see :func:`medseg.networks.list_networks`).
        network_options: its options (``in_channels``/``out_channels`` are filled in from
            the channels and labels when missing).
        out_dir: run folder; each fold writes ``fold_K/`` (or ``all/``), the cache goes to
            ``cache/`` and the split to ``splits.json``.
        preprocess: callable on the image :class:`Volume` (None: identity); the label is
            put on the pre-processed grid with nearest neighbour.
        labels: label value → name incl. 0 (default: from the dataset, else from the values).
        channels: channel names (default: from the dataset).
        config: the full pipeline config, stored in the checkpoints.
        training: a :class:`TrainingConfig`; or give its fields as keyword ``options``.

    A run on a small phantom dataset is the example of :mod:`medseg.training`.
    """

    def __init__(
        self,
        network_name: str,
        network_options: Mapping[str, Any] | None = None,
        *,
        out_dir: str | os.PathLike[str],
        preprocess: Callable[[Volume], Volume] | None = None,
        labels: Mapping[int, str] | None = None,
        channels: Sequence[str] | None = None,
        config: Mapping[str, Any] | None = None,
        training: TrainingConfig | None = None,
        **options: Any,
    ) -> None:
        self.network_name = network_name
        self.task: Task = task_for(network_info(network_name).task)
        self.network_options = dict(network_options or {})
        self.out_dir = Path(out_dir)
        self.preprocess = preprocess
        self.labels = {int(k): str(v) for k, v in labels.items()} if labels else None
        self.channels = list(channels) if channels else None
        self.config = dict(config or {})
        if training is not None and options:
            raise ConfigError("give the training options either as a TrainingConfig or as keywords, not both")
        self.settings = training if training is not None else TrainingConfig.from_dict(options)
        self.cache_stats = CacheStats()
        #: the trained network (unwrapped from DDP, eval mode) after :meth:`fit`.
        self.network: nn.Module | None = None

    # ---- main entry -------------------------------------------------------------------------
    @reuse_freed_memory()
    def fit(
        self,
        dataset: Dataset | str | os.PathLike[str],
        fold: int | None = None,
        n_folds: int = 5,
        *,
        resume: bool = True,
    ) -> TrainResult:
        """Train fold ``fold`` of ``n_folds`` (None: all cases, no validation).

        Runs under ``torchrun`` as DDP (one process per GPU, or gloo on CPUs): rank 0
        pre-processes, validates and writes; every rank trains on its own patches.

        Args:
            dataset: a :class:`Dataset` or a path for :func:`load_dataset`.
            fold: the fold to train (``splits.json`` is created by the first fold to run).
            n_folds: number of folds.
            resume: continue from ``last.pt`` of this fold when it exists (the learning-rate
                schedule follows the current ``max_epochs``, so a resumed run may be longer; with
                ``max_time_s`` the time of the earlier sessions counts, and only the rest is trained).

        Returns:
            A :class:`TrainResult`: checkpoint and log paths, and the validation metrics of the
            epoch ``best.pt`` holds.

        Raises:
            ConfigError: patch size not divisible as the network needs, bad options.
            GeometryError: image/label grids mismatch (every case listed).
        """
        s = self.settings
        dataset = self._check(dataset, fold, n_folds)  # before anything is written
        with _deterministic(s.deterministic), session.hold_run_folder(session.fold_dir(self.out_dir, fold)), \
                stop_on_signals() as signal_stop:  # fmt: skip
            run = self._set_up(dataset, fold, n_folds, resume)
            run.stop, epoch = signal_stop, run.start_epoch
            try:
                # with a time budget the run trains until the time is used, however many epochs that takes
                while run.stopped_by == "completed" and (s.max_time_s is not None or epoch < s.max_epochs):
                    row = self._train_epoch(run, epoch)
                    if row is None:  # a signal: the epoch under way is abandoned, last.pt holds the one before
                        run.stopped_by = str(run.stop.signal)
                        break
                    stop = self._end_epoch(run, epoch, row) if run.dist.is_main else False
                    epoch += 1
                    if ddp.broadcast_flag(stop, run.dist, run.device):  # rank 0 recorded why
                        break
            finally:
                run.close()
            return self._finish(run, epoch)

    # ---- set-up -----------------------------------------------------------------------------
    def _check(self, dataset: Dataset | str | os.PathLike[str], fold: int | None, n_folds: int) -> Dataset:
        """The dataset, loaded; fold, options and patch size checked before any compute."""
        s = self.settings
        if not isinstance(dataset, Dataset):
            dataset = load_dataset(dataset)
        if len(dataset) == 0:
            raise InputError(f"{dataset.source}: the dataset has no cases")
        if fold is not None and not 0 <= fold < n_folds:
            raise ConfigError(f"fold must be in 0..{n_folds - 1}, got {fold}")
        if s.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError(
                "training.tensorboard is true but the tensorboard package is not installed; "
                "pip install 'medseg[tensorboard]', or set training.tensorboard: false"
            )
        probe = self.task.network_options(self.network_options, len(dataset.cases[0].images), 2, s.patch_size)
        self._check_dims(probe)
        check_patch_size(self.network_name, s.patch_size, **probe)  # before any compute
        return dataset

    def _set_up(self, dataset: Dataset, fold: int | None, n_folds: int, resume: bool) -> RunState:
        """Cache the cases, split them, build network and optimiser, resume."""
        s = self.settings
        device = resolve_device(s.device, option="training.device")
        dist = ddp.init_distributed(device.type)
        if dist.enabled and device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(device)
        _seed(s.seed + dist.rank)

        cases = self._cached_cases(dataset, dist)
        by_id = {c.case_id: c for c in cases}
        labels = self.labels or (dict(dataset.labels) if dataset.labels else self.task.default_labels(dataset, cases))
        self.task.check_cases(cases, labels)
        channels = self.channels or dataset.channels or [f"channel{i}" for i in range(len(dataset.cases[0].images))]
        options = self.task.network_options(self.network_options, len(channels), len(labels), s.patch_size)
        run_dir, train_ids, val_ids = self._split(sorted(by_id), fold, n_folds, dist)

        torch.manual_seed(s.seed)
        network = build_network(self.network_name, **options).to(device)
        optimizer, precision, scaler = training_parts(network, s, device)
        log.info("training precision: %s", precision.reason)
        meta: dict[str, Any] = {
            "network_name": self.network_name,
            "network_options": options,
            "config": {**self.config, "training": s.to_dict()},
            "labels": labels,
            "channels": channels,
            # what the training cases looked like, for per-case QC at prediction (medseg.qc)
            "training_summary": training_summary([by_id[i].summary for i in train_ids]),
        }
        run = RunState(
            device=device,
            dist=dist,
            run_dir=run_dir,
            train_cases=[by_id[i] for i in train_ids],
            val_cases=[by_id[i] for i in val_ids],
            labels=labels,
            channels=channels,
            options=options,
            network=network,
            optimizer=optimizer,
            scaler=scaler,
            loss_fn=self.task.loss(s.loss),
            precision=precision,
            # on the CPU the loader workers augment (overlapping with compute); on a GPU the device does
            augment_in_loader=device.type == "cpu" and s.num_workers > 0,
            batches=iter(()),
            epoch_log=None,
            bar=tqdm(disable=True),
            meta=meta,
        )
        rows: list[dict[str, Any]] = []
        if resume and run.last_path.exists():
            rows = session.resume(run, s)
            run.started = time.perf_counter() - run.training_s  # the earlier sessions' time counts
            if s.max_time_s is not None and run.elapsed_s >= s.max_time_s:
                run.stopped_by = "time limit"
        if dist.enabled:
            run.network = nn.parallel.DistributedDataParallel(
                network, device_ids=[device.index] if device.type == "cuda" else None
            )
        self._start_stream(run)
        if dist.is_main:
            run.epoch_log = EpochLog(run_dir, tensorboard=s.tensorboard, rows=rows)
        run.bar = tqdm(
            total=s.max_epochs * s.iterations_per_epoch if s.max_time_s is None else None,
            initial=run.iterations,
            disable=not (s.progress and dist.is_main and sys.stderr.isatty()),  # a log file gets a line per epoch
            desc=run_dir.name,
            unit="it",
            dynamic_ncols=True,
        )
        return run

    def _check_dims(self, options: Mapping[str, Any]) -> None:
        patch = self.settings.patch_size
        if int(options["spatial_dims"]) != len(patch):
            raise ConfigError(
                f"network '{self.network_name}' is {options['spatial_dims']}D but training.patch_size "
                f"{list(patch)} has {len(patch)} axes"
            )

    def _cached_cases(self, dataset: Dataset, dist: ddp.DistInfo) -> list[CachedCase]:
        """Pre-process every case once into the cache (rank 0 first; the others then read it)."""
        cache_dir = self.settings.cache_dir or self.out_dir / "cache"
        config_steps = self.config.get("preprocess")
        key = json.dumps(config_steps, sort_keys=True) if config_steps is not None else callable_key(self.preprocess)
        tolerance = float((self.config.get("input") or {}).get("spacing_tolerance", SPACING_TOLERANCE))
        cases: list[CachedCase] = []
        if dist.is_main:
            cases = prepare_dataset(
                dataset,
                self.preprocess,
                cache_dir,
                preprocess_key=key,
                stats=self.cache_stats,
                spacing_tolerance=tolerance,
            )
        ddp.barrier(dist)
        if not dist.is_main:
            cases = prepare_dataset(  # rank 0 verified (or rebuilt) every entry
                dataset, self.preprocess, cache_dir, preprocess_key=key, spacing_tolerance=tolerance, verify=False
            )
        return cases

    def _split(
        self, ids: list[str], fold: int | None, n_folds: int, dist: ddp.DistInfo
    ) -> tuple[Path, list[str], list[str]]:
        """``(run folder, training ids, validation ids)`` of ``fold`` (None: all cases, no validation)."""
        if fold is None:
            return session.fold_dir(self.out_dir, fold), ids, []
        splits_file = self.out_dir / "splits.json"
        if dist.is_main:
            load_or_create_splits(splits_file, ids, n_folds, self.settings.split_seed)
        ddp.barrier(dist)
        split = load_or_create_splits(splits_file, ids, n_folds, self.settings.split_seed)[fold]
        return session.fold_dir(self.out_dir, fold), list(split["train"]), list(split["val"])

    def _start_stream(self, run: RunState) -> None:
        s = self.settings
        stream = PatchStream(
            run.train_cases,
            s.patch_size,
            s.batch_size,
            foreground_ratio=s.foreground_ratio,
            class_balanced=s.class_balanced,
            seed=s.seed,
            rank=run.dist.rank,
            start_epoch=run.start_epoch,
            iterations_per_epoch=s.iterations_per_epoch,
            task=self.task,
            augment=s.augment if run.augment_in_loader else None,
        )
        run.batches = iter(make_loader(stream, s.num_workers, pin_memory=run.device.type == "cuda"))

    # ---- one epoch ---------------------------------------------------------------------------
    def _train_epoch(self, run: RunState, epoch: int) -> dict[str, Any] | None:
        """Train ``iterations_per_epoch`` steps; returns the epoch's log row (loss, lr, times), or None when a
        signal stopped it (under DDP rank 0's signal stops every rank at the same iteration)."""
        s = self.settings
        t0 = time.perf_counter()
        lr = s.learning_rate * lr_factor(s.lr_schedule, self._progress(run, epoch))
        set_lr(run.optimizer, lr)
        run.network.train()
        generator = torch.Generator().manual_seed(s.seed * 1_000_003 + epoch * 1009 + run.dist.rank)
        losses, wait = [], 0.0
        for it in range(s.iterations_per_epoch):
            if ddp.broadcast_flag(run.stop.is_set(), run.dist, run.device):
                run.stop.set(run.stop.signal or "SIGTERM")  # on the ranks rank 0 stopped
                return None
            tw = time.perf_counter()
            if (
                s.max_time_s is not None and it
            ):  # a budget shorter than an epoch ends it early; the lr follows the clock
                if tw - run.started >= s.max_time_s:
                    break
                set_lr(run.optimizer, s.learning_rate * lr_factor(s.lr_schedule, (tw - run.started) / s.max_time_s))
            x, y = next(run.batches)
            x = x.to(run.device, non_blocking=True)
            y = y.to(run.device, non_blocking=True)
            wait += time.perf_counter() - tw
            if s.augment is not None and not run.augment_in_loader:
                x, y_aug = s.augment(x, y if self.task.spatial_target else None, generator)
                y = y_aug if y_aug is not None else y
            losses.append(self._step(run, x, y))
            run.iterations += 1
            run.bar.update(1)
            run.bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4f}")
            if epoch == run.start_epoch and it + 1 == min(PROJECTION_ITERATIONS, s.iterations_per_epoch):
                self._announce_duration(run, (time.perf_counter() - t0) / (it + 1))
        train_loss = float(np.mean(losses))
        if not math.isfinite(train_loss):
            raise ConfigError(
                f"training diverged at epoch {epoch + 1} (loss {train_loss}); lower training.lr "
                f"(now {s.learning_rate}) or enable training.grad_clip"
            )
        return {"epoch": epoch + 1, "train_loss": train_loss, "lr": lr, "time_s": 0.0, "data_wait_s": wait, "_t0": t0}

    def _step(self, run: RunState, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimiser step on a batch (the step the planner's probes time); returns the loss."""
        return training_step(
            run.network,
            run.optimizer,
            run.loss_fn,
            run.scaler,
            run.precision,
            run.device,
            self.settings.grad_clip,
            x,
            y,
        )

    def _progress(self, run: RunState, epoch: int) -> float:
        """Fraction of the run done at the start of ``epoch``: of the time budget when there is one
        (earlier sessions of a resumed run included), else of the epochs."""
        s = self.settings
        if s.max_time_s is not None:
            return min(run.elapsed_s / s.max_time_s, 1.0)
        return epoch / s.max_epochs

    def _announce_duration(self, run: RunState, seconds_per_iteration: float) -> None:
        """Say how long the whole plan takes on this device, measured over the first iterations."""
        s = self.settings
        if s.max_time_s is not None:
            left = max(s.max_time_s - run.elapsed_s, 0.0)
            log.info(
                "training: %.2f s/iteration on %s; the time budget (training.max_time_s = %.0f s, %.0f s left) "
                "gives ≈ %d more iterations", seconds_per_iteration, run.device, s.max_time_s, left,
                left / max(seconds_per_iteration, 1e-9),
            )  # fmt: skip
            return
        remaining = (s.max_epochs - run.start_epoch) * s.iterations_per_epoch
        hours = remaining * seconds_per_iteration / 3600
        message = (
            f"training: {seconds_per_iteration:.2f} s/iteration on {run.device} → the plan ({s.max_epochs} epochs × "
            f"{s.iterations_per_epoch} iterations) takes ≈ {_duration(hours)} of training steps"
        )
        if hours > LONG_RUN_HOURS:
            log.warning(
                "%s; shorten it with training.max_epochs / training.iterations_per_epoch (--epochs), set a budget "
                "with training.max_time_s (--max-time), or plan for this device with 'medseg plan --time-budget'",
                message,
            )
        else:
            log.info("%s", message)

    # ---- end of an epoch ---------------------------------------------------------------------
    def _end_epoch(self, run: RunState, epoch: int, row: dict[str, Any]) -> bool:
        """Validate, keep the best checkpoint, check early stopping and the time budget, save ``last.pt``,
        log the row. Runs on rank 0; returns True when training should stop."""
        s = self.settings
        t0 = row.pop("_t0")
        # the budget is used up when another epoch as long as this one would not fit into it
        time_up = s.max_time_s is not None and run.elapsed_s + (time.perf_counter() - t0) > s.max_time_s
        last = time_up if s.max_time_s is not None else epoch + 1 == s.max_epochs
        stop = False
        if run.val_cases and ((epoch + 1) % s.val_every == 0 or last):
            metrics = self.validate(_unwrap(run.network), run.val_cases, run.labels, run.device, run.precision.dtype)
            row.update(metrics)
            run.metrics = metrics
            run.validations += 1
            score = metrics[self.task.score_key]
            if score > run.best:
                run.best, run.best_epoch, run.since_best = score, epoch + 1, 0
                run.best_metrics = dict(metrics)
                save_checkpoint(run.best_path, run.network, epoch=epoch + 1, metrics=metrics, **run.meta)
            else:
                run.since_best += 1
            if s.early_stopping is not None and run.since_best >= s.early_stopping:
                stop, run.stopped_by = True, "early stopping"
        if time_up and not stop:
            log.info("training: time budget of %.0f s reached after epoch %d", s.max_time_s, epoch + 1)
            stop, run.stopped_by = True, "time limit"
        row.update(time_s=time.perf_counter() - t0)
        run.training_s = run.elapsed_s
        if run.epoch_log is not None:  # the row first: every epoch last.pt claims is in log.csv
            run.epoch_log.append(row)
        save_checkpoint(
            run.last_path, run.network, epoch=epoch + 1, metrics=run.metrics,
            training_state=session.training_state(run), **run.meta,
        )  # fmt: skip
        if s.progress and run.bar.disable:
            scores = "".join(f", {k} {v:.4f}" for k, v in row.items() if k.endswith("_mean") or k == "val_accuracy")
            print(f"{run.run_dir.name} epoch {epoch + 1}: loss {row['train_loss']:.4f}, lr {row['lr']:.3g}, "
                  f"{row['time_s']:.1f} s{scores}", file=sys.stderr, flush=True)  # fmt: skip
        return stop

    def _finish(self, run: RunState, epoch: int) -> TrainResult:
        """Write ``best.pt`` (when nothing validated) and ``metrics.json``; return the result. A run stopped by a
        signal writes neither (its network holds part of an abandoned epoch; ``last.pt`` is what it leaves)."""
        if run.dist.is_main and run.stopped_by not in ("SIGINT", "SIGTERM"):
            if not run.best_path.exists() or not run.val_cases:
                save_checkpoint(run.best_path, run.network, epoch=epoch, metrics=run.metrics, **run.meta)
            final: dict[str, Any] = {k: v for k, v in run.best_metrics.items() if isinstance(v, (int, float))}
            final.update({f"last_{k}": v for k, v in run.metrics.items() if isinstance(v, (int, float))})
            final.update(best_epoch=run.best_epoch, epochs=epoch, **self._run_record(run))
            write_text_atomic(run.run_dir / "metrics.json", json.dumps(plain(final), indent=1))
        self.network = _unwrap(run.network).eval()
        ddp.barrier(run.dist)
        ddp.shutdown(run.dist)
        return TrainResult(
            out_dir=run.run_dir,
            best_checkpoint=run.best_path,
            last_checkpoint=run.last_path,
            log_csv=run.run_dir / "log.csv",
            curve_png=run.run_dir / "curve.png",
            metrics=dict(run.best_metrics),
            epochs=epoch,
            stopped_early=run.stopped_by != "completed",
            best_epoch=run.best_epoch,
            iterations=run.iterations,
            stopped_by=run.stopped_by,
        )

    def _run_record(self, run: RunState) -> dict[str, Any]:
        """What actually ran, for ``metrics.json`` and model cards: iterations and epochs done against the
        plan, validations, training time and why the run ended."""
        s = self.settings
        return {
            "epochs_planned": s.max_epochs if s.max_time_s is None else None,
            "iterations": run.iterations,
            "iterations_per_epoch": s.iterations_per_epoch,
            "validations": run.validations,
            "training_s": round(run.training_s, 1),
            "max_time_s": s.max_time_s,
            "stopped_by": run.stopped_by,
        }

    # ---- validation ---------------------------------------------------------------------------
    @torch.no_grad()
    def validate(
        self,
        network: nn.Module,
        cases: Sequence[CachedCase],
        labels: Mapping[int, str],
        device: torch.device,
        precision: torch.dtype | None = None,
    ) -> dict[str, float]:
        """Per-class Dice (segmentation, sliding window on whole cases) or accuracy (classifier)."""
        network.eval()
        return self.task.validate(network, cases, labels, device, precision, self.settings)


def _unwrap(network: nn.Module) -> nn.Module:
    return network.module if isinstance(network, nn.parallel.DistributedDataParallel) else network


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """``training.deterministic``: torch's deterministic kernels (and cuDNN without autotuning) inside."""
    if not enabled:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]


def _duration(hours: float) -> str:
    if hours >= 48:
        return f"{hours / 24:.0f} days"
    if hours >= 1:
        return f"{hours:.1f} h"
    return f"{hours * 60:.0f} min"
