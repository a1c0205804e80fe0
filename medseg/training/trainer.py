"""The training engine: cached cases → patches → augmentation → network, with validation,
checkpoints, resume, early stopping, k-fold splits, logs and DDP.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from medseg.core.memory import reuse_freed_memory
from medseg.core.volume import Volume
from medseg.errors import ConfigError, InputError
from medseg.io import write_text_atomic
from medseg.networks import build_network, check_patch_size, network_info
from medseg.training import distributed as ddp
from medseg.training.cache import CachedCase, CacheStats, callable_key, prepare_dataset
from medseg.training.checkpoint import load_checkpoint, plain, save_checkpoint
from medseg.training.config import TrainingConfig, TrainResult
from medseg.training.dataset import Dataset, load_dataset
from medseg.training.loader import PatchStream, make_loader
from medseg.training.logs import EpochLog
from medseg.training.losses import ClassificationLoss, SegmentationLoss
from medseg.training.optim import build_optimizer, build_scheduler
from medseg.training.splits import load_or_create_splits
from medseg.training.validation import _predict_case, dice_summary, per_class_dice
from medseg.transforms.functional.croppad import crop_or_pad

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; other names as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"training.device: unknown device {name!r} (use 'auto', 'cpu', 'cuda', 'cuda:1')") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training.device is {name!r} but no CUDA device is available; use 'auto' or 'cpu'")
    return device


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

    Example::

        trainer = Trainer("unet", {"n_stages": 4}, out_dir="runs/liver", patch_size=(64, 64, 32),
                          max_epochs=50, iterations_per_epoch=100)
        result = trainer.fit(load_dataset("Dataset001_Liver"), fold=0)
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
        self.spec = network_info(network_name)
        self.network_name = network_name
        self.network_options = dict(network_options or {})
        self.out_dir = Path(out_dir)
        self.preprocess = preprocess
        self.labels = {int(k): str(v) for k, v in labels.items()} if labels else None
        self.channels = list(channels) if channels else None
        self.config = dict(config or {})
        if training is not None and options:
            raise ConfigError("give the training options either as a TrainingConfig or as keywords, not both")
        self.settings = training if training is not None else TrainingConfig.from_dict(options)
        self.task = self.spec.task
        self.cache_stats = CacheStats()
        #: the trained network (unwrapped from DDP, eval mode) after :meth:`fit`.
        self.network: nn.Module | None = None

    # ---- set-up -----------------------------------------------------------------------------
    def _complete_options(self, n_channels: int, n_classes: int) -> dict[str, Any]:
        opts = dict(self.network_options)
        opts.setdefault("in_channels", n_channels)
        if self.task == "segmentation":
            opts.setdefault("out_channels", n_classes)
            opts.setdefault("spatial_dims", len(self.settings.patch_size))
        else:
            opts.setdefault("n_classes", n_classes)
            opts.setdefault("spatial_dims", len(self.settings.patch_size))
            opts.setdefault("input_size", list(self.settings.patch_size))
        if int(opts["spatial_dims"]) != len(self.settings.patch_size):
            raise ConfigError(
                f"network '{self.network_name}' is {opts['spatial_dims']}D but training.patch_size "
                f"{list(self.settings.patch_size)} has {len(self.settings.patch_size)} axes"
            )
        return opts

    def _labels_for(self, dataset: Dataset, cases: Sequence[CachedCase]) -> dict[int, str]:
        if self.labels:
            return self.labels
        if dataset.labels:
            return dict(dataset.labels)
        if self.task == "classification":
            classes = sorted({int(c.class_label) for c in cases if c.class_label is not None})
            if not classes:
                raise InputError(f"{dataset.source}: no case has a 'class'; the classifier needs case-level labels")
            return {i: f"class_{i}" for i in range(max(classes) + 1)}
        values: set[int] = {0}
        for c in cases:
            values |= set(c.locations())
        return {v: ("background" if v == 0 else f"label_{v}") for v in range(max(values) + 1)}

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
            resume: continue from ``last.pt`` of this fold when it exists.

        Returns:
            A :class:`TrainResult` (checkpoint and log paths, final validation metrics).

        Raises:
            ConfigError: patch size not divisible as the network needs, bad options.
            GeometryError: image/label grids mismatch (every case listed).
        """
        s = self.settings
        if not isinstance(dataset, Dataset):
            dataset = load_dataset(dataset)
        if len(dataset) == 0:
            raise InputError(f"{dataset.source}: the dataset has no cases")
        if fold is not None and not 0 <= fold < n_folds:
            raise ConfigError(f"fold must be in 0..{n_folds - 1}, got {fold}")
        probe = self._complete_options(len(dataset.cases[0].images), 2)
        check_patch_size(self.network_name, s.patch_size, **probe)  # before any compute
        device = resolve_device(s.device)
        dist = ddp.init_distributed(device.type)
        if dist.enabled and device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(device)
        self._seed(s.seed + dist.rank)

        cache_dir = s.cache_dir or self.out_dir / "cache"
        key = (
            json.dumps(self.config["preprocess"], sort_keys=True)
            if "preprocess" in self.config
            else callable_key(self.preprocess)
        )
        if dist.is_main:
            cases = prepare_dataset(dataset, self.preprocess, cache_dir, preprocess_key=key, stats=self.cache_stats)
        ddp.barrier(dist)
        if not dist.is_main:
            cases = prepare_dataset(dataset, self.preprocess, cache_dir, preprocess_key=key)
        by_id = {c.case_id: c for c in cases}
        labels = self._labels_for(dataset, cases)
        channels = self.channels or dataset.channels or [f"channel{i}" for i in range(len(dataset.cases[0].images))]
        options = self._complete_options(len(channels), len(labels))
        if self.task == "segmentation":
            for c in cases:
                unknown = sorted(set(c.locations()) - set(labels))
                if unknown:
                    raise InputError(
                        f"case '{c.case_id}': label values {unknown} are not among the labels {labels}; "
                        "add them to the labels (dataset.json) or remap the label files"
                    )

        if fold is None:
            run_dir, train_ids, val_ids = self.out_dir / "all", sorted(by_id), []
        else:
            if dist.is_main:
                load_or_create_splits(self.out_dir / "splits.json", sorted(by_id), n_folds, s.split_seed)
            ddp.barrier(dist)
            split = load_or_create_splits(self.out_dir / "splits.json", sorted(by_id), n_folds, s.split_seed)[fold]
            run_dir, train_ids, val_ids = self.out_dir / f"fold_{fold}", split["train"], split["val"]
        train_cases = [by_id[i] for i in train_ids]
        val_cases = [by_id[i] for i in val_ids]

        torch.manual_seed(s.seed)
        network = build_network(self.network_name, **options).to(device)
        optimizer = build_optimizer(s.optimizer, network.parameters(), lr=s.learning_rate, weight_decay=s.weight_decay)
        scheduler = build_scheduler(s.lr_schedule, optimizer, s.max_epochs)
        state: dict[str, Any] = {"epoch": 0, "best": -math.inf, "best_epoch": -1, "since_best": 0, "metrics": {}}
        last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
        rows: list[dict[str, Any]] = []
        if resume and last_path.exists():
            ckpt = load_checkpoint(last_path, labels=labels, channels=channels)
            network.load_state_dict(ckpt.state_dict)
            ts = ckpt.training_state
            optimizer.load_state_dict(ts["optimizer"])
            scheduler.load_state_dict(ts["scheduler"])
            state.update(
                {k: ts[k] for k in ("best", "best_epoch", "since_best")}, epoch=ckpt.epoch, metrics=ckpt.metrics
            )
            rows = [r for r in EpochLog.read(run_dir / "log.csv") if int(r["epoch"]) <= ckpt.epoch]
            log.info("resuming %s from epoch %d", run_dir, ckpt.epoch)
        if dist.enabled:
            network = nn.parallel.DistributedDataParallel(
                network, device_ids=[device.index] if device.type == "cuda" else None
            )

        loss_fn: nn.Module = SegmentationLoss(s.loss) if self.task == "segmentation" else ClassificationLoss(s.loss)
        use_amp = s.amp and device.type == "cuda"
        amp_dtype = torch.bfloat16 if s.amp_dtype == "bfloat16" else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
        start_epoch = int(state["epoch"])
        # on the CPU the loader workers augment (overlapping with compute); on a GPU the device does
        augment_in_loader = device.type == "cpu" and s.num_workers > 0
        stream = PatchStream(
            train_cases,
            s.patch_size,
            s.batch_size,
            foreground_ratio=s.foreground_ratio,
            class_balanced=s.class_balanced,
            seed=s.seed,
            rank=dist.rank,
            start_epoch=start_epoch,
            task=self.task,
            augment=s.augment if augment_in_loader else None,
        )
        batches = iter(make_loader(stream, s.num_workers, pin_memory=device.type == "cuda"))
        epoch_log = EpochLog(run_dir, tensorboard=s.tensorboard and dist.is_main, rows=rows) if dist.is_main else None
        total = s.max_epochs * s.iterations_per_epoch
        bar = tqdm(
            total=total,
            initial=start_epoch * s.iterations_per_epoch,
            disable=not (s.progress and dist.is_main),
            desc=run_dir.name,
            unit="it",
            dynamic_ncols=True,
        )
        meta: dict[str, Any] = {
            "network_name": self.network_name,
            "network_options": options,
            "config": {**self.config, "training": s.to_dict()},
            "labels": labels,
            "channels": channels,
        }
        stopped_early = False
        epoch = start_epoch
        started = time.perf_counter()
        try:
            for epoch in range(start_epoch, s.max_epochs):
                t0 = time.perf_counter()
                network.train()
                generator = torch.Generator().manual_seed(s.seed * 1_000_003 + epoch * 1009 + dist.rank)
                losses, wait = [], 0.0
                for _ in range(s.iterations_per_epoch):
                    tw = time.perf_counter()
                    x, y = next(batches)
                    x = x.to(device, non_blocking=True)
                    y = y.to(device, non_blocking=True)
                    wait += time.perf_counter() - tw
                    if s.augment is not None and not augment_in_loader:
                        x, y_aug = s.augment(x, y if self.task == "segmentation" else None, generator)
                        y = y_aug if y_aug is not None else y
                    optimizer.zero_grad(set_to_none=True)
                    with torch.autocast(device.type, dtype=amp_dtype) if use_amp else nullcontext():
                        out = network(x)
                    loss = loss_fn(out, y)
                    scaler.scale(loss).backward()
                    if s.grad_clip is not None:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(network.parameters(), s.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    losses.append(float(loss.detach()))
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4f}")
                lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                train_loss = float(np.mean(losses))
                if not math.isfinite(train_loss):
                    raise ConfigError(
                        f"training diverged at epoch {epoch + 1} (loss {train_loss}); lower training.lr "
                        f"(now {s.learning_rate}) or enable training.grad_clip"
                    )
                row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": train_loss, "lr": lr}
                validate = bool(val_cases) and ((epoch + 1) % s.val_every == 0 or epoch + 1 == s.max_epochs)
                stop = False
                if dist.is_main:
                    if validate:
                        metrics = self.validate(_unwrap(network), val_cases, labels, device, use_amp)
                        row.update(metrics)
                        state["metrics"] = metrics
                        score = metrics["val_dice_mean" if self.task == "segmentation" else "val_accuracy"]
                        if score > state["best"]:
                            state.update(best=score, best_epoch=epoch + 1, since_best=0)
                            save_checkpoint(best_path, network, epoch=epoch + 1, metrics=metrics, **meta)
                        else:
                            state["since_best"] = int(state["since_best"]) + 1
                        stop = s.early_stopping is not None and int(state["since_best"]) >= s.early_stopping
                    if s.max_time_s is not None and time.perf_counter() - started >= s.max_time_s:
                        log.info("training: time budget of %.0f s reached after epoch %d", s.max_time_s, epoch + 1)
                        stop = True
                    row.update(time_s=time.perf_counter() - t0, data_wait_s=wait)
                    training_state = {
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        **{k: state[k] for k in ("best", "best_epoch", "since_best")},
                    }
                    save_checkpoint(
                        last_path,
                        network,
                        epoch=epoch + 1,
                        metrics=state["metrics"],
                        training_state=training_state,
                        **meta,
                    )
                    if epoch_log is not None:
                        epoch_log.append(row)
                if ddp.broadcast_flag(stop, dist, device):
                    stopped_early = True
                    epoch += 1
                    break
            else:
                epoch = s.max_epochs
        finally:
            bar.close()
            if epoch_log is not None:
                epoch_log.close()
        if dist.is_main:
            if not best_path.exists() or not val_cases:
                save_checkpoint(best_path, network, epoch=epoch, metrics=state["metrics"], **meta)
            final = {k: v for k, v in state["metrics"].items() if isinstance(v, (int, float))}
            final.update(best_epoch=state["best_epoch"], epochs=epoch)
            write_text_atomic(run_dir / "metrics.json", json.dumps(plain(final), indent=1))
        self.network = _unwrap(network).eval()
        ddp.barrier(dist)
        ddp.shutdown(dist)
        return TrainResult(
            out_dir=run_dir,
            best_checkpoint=best_path,
            last_checkpoint=last_path,
            log_csv=run_dir / "log.csv",
            curve_png=run_dir / "curve.png",
            metrics=dict(state["metrics"]),
            epochs=epoch,
            stopped_early=stopped_early,
        )

    # ---- validation ---------------------------------------------------------------------------
    @torch.no_grad()
    def validate(
        self,
        network: nn.Module,
        cases: Sequence[CachedCase],
        labels: Mapping[int, str],
        device: torch.device,
        amp: bool,
    ) -> dict[str, float]:
        """Per-class Dice (segmentation, sliding window on whole cases) or accuracy (classifier)."""
        network.eval()
        s = self.settings
        if self.task == "classification":
            correct = 0
            patch3 = (*s.patch_size, 1)[:3]
            for c in cases:
                img = torch.from_numpy(np.asarray(c.image(mmap=False)))
                start = [(int(sz) - p) // 2 for sz, p in zip(img.shape[1:], patch3)]
                x = crop_or_pad(img, start, patch3, 0.0)
                x = (x[..., 0] if len(s.patch_size) == 2 else x)[None].to(device)
                correct += int(network(x).argmax(1).item() == int(c.class_label or 0))
            return {"val_accuracy": correct / max(len(cases), 1)}
        per_case = []
        fg = [k for k in labels if k != 0]
        for c in cases:
            image = torch.from_numpy(np.asarray(c.image(mmap=False))).to(device)
            target = torch.from_numpy(np.asarray(c.label(mmap=False))[0]).to(device)
            if len(s.patch_size) == 2:  # slice-wise: the Z slices form the batch
                slices = image.permute(3, 0, 1, 2)
                logits = torch.stack(
                    [
                        _predict_case(
                            network,
                            sl,
                            patch_size=s.patch_size,
                            overlap=s.val_overlap,
                            batch_size=s.val_batch_size,
                            amp=amp,
                        )
                        for sl in slices
                    ],
                    dim=-1,
                )
            else:
                logits = _predict_case(
                    network, image, patch_size=s.patch_size, overlap=s.val_overlap, batch_size=s.val_batch_size, amp=amp
                )
            per_case.append(per_class_dice(logits.argmax(0), target, fg))
        return dice_summary(per_case, {k: labels[k] for k in fg})

    @staticmethod
    def _seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)


def _unwrap(network: nn.Module) -> nn.Module:
    return network.module if isinstance(network, nn.parallel.DistributedDataParallel) else network
