"""Training options as a typed dataclass the pipeline can validate, and the result of a run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medseg.core.registry import check_options
from medseg.errors import ConfigError, did_you_mean
from medseg.training.losses import LOSSES
from medseg.training.optim import OPTIMIZERS, SCHEDULERS
from medseg.transforms.augment import Augment


@dataclass(frozen=True)
class TrainingConfig:
    """Options of a training run (the ``training:`` section of a pipeline).

    Attributes:
        patch_size: training patch in voxels, one per spatial axis of the network
            (2 values for 2D networks, which train on single slices).
        batch_size: patches per step (per process under DDP).
        max_epochs: epochs to train.
        iterations_per_epoch: optimiser steps per epoch.
        val_every: run sliding-window validation on the whole validation cases every N epochs
            (and after the last epoch).
        loss: ``"dice_ce"``, ``"dice"``, ``"ce"``, ``"dice_focal"``, ``"focal"``, ``"tversky"``.
        optimizer: ``"sgd"`` (Nesterov, momentum 0.99) or ``"adamw"``.
        lr: initial learning rate (None: 0.01 for SGD, 3e-4 for AdamW).
        weight_decay: weight decay (L2 for SGD, decoupled for AdamW).
        schedule: ``"poly"``, ``"cosine"``, ``"constant"`` (None: poly for SGD, cosine for AdamW).
        grad_clip: maximum gradient norm (None: no clipping).
        amp: mixed precision: None (auto) on CUDA, and on CPUs with native bfloat16 where it was
            measured to pay (:data:`medseg.core.precision.CPU_TRAINING_BF16`); true: always (bfloat16
            on a CPU); false: float32.
        amp_dtype: on CUDA, ``"bfloat16"`` or ``"float16"`` (with a gradient scaler).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        seed: seeds weights, patches and augmentation.
        deterministic: use torch's deterministic kernels during training (slower on GPUs;
            an operation without a deterministic kernel raises).
        num_workers: data-loading processes (0: in the training process).
        foreground_ratio: fraction of each batch centred on foreground.
        class_balanced: pick the foreground class uniformly among those the case has, then its voxel (nnU-Net's
            data loader; ``medseg plan`` writes true); false: a foreground voxel, so classes in proportion to size.
        augment: augmentation options (None: no augmentation).
        early_stopping: stop after this many validations without improvement (None: never).
        max_time_s: training time in seconds (None: train ``max_epochs`` epochs). When set, the run
            trains until this time is used, ending with the last epoch that fits into it (at
            least one), however many epochs that is (``max_epochs`` then does not end the run; early stopping still does),
            and the learning-rate schedule is spread over the time. A resumed run counts the time
            of its earlier sessions (stored in ``last.pt``), so the budget and schedule continue.
        val_overlap: sliding-window overlap during validation.
        val_batch_size: windows per forward pass during validation.
        tensorboard: also log to TensorBoard (when installed).
        progress: show a progress bar with ETA.
        cache_dir: pre-processed case cache (None: ``out_dir/cache``).
        split_seed: seed of the k-fold split.
    """

    patch_size: tuple[int, ...] = (128, 128, 128)
    batch_size: int = 2
    max_epochs: int = 1000
    iterations_per_epoch: int = 250
    val_every: int = 10
    loss: str = "dice_ce"
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float | None = None
    weight_decay: float = 3e-5
    schedule: str | None = None
    grad_clip: float | None = 12.0
    amp: bool | None = None
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    num_workers: int = 0
    foreground_ratio: float = 0.33
    class_balanced: bool = False
    augment: Augment | None = field(default_factory=Augment)
    early_stopping: int | None = None
    val_overlap: float = 0.5
    val_batch_size: int = 4
    max_time_s: float | None = None
    tensorboard: bool = False
    progress: bool = True
    cache_dir: Path | None = None
    split_seed: int = 12345

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        if isinstance(self.augment, dict):
            check_options("training.augment", Augment, self.augment)
            object.__setattr__(self, "augment", Augment(**self.augment))
        if len(self.patch_size) not in (2, 3) or min(self.patch_size) < 1:
            raise ConfigError(f"training.patch_size must be 2 or 3 positive sizes, got {list(self.patch_size)}")
        for name in ("batch_size", "max_epochs", "iterations_per_epoch", "val_every", "val_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"training.{name} must be at least 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ConfigError(f"training.num_workers must be >= 0, got {self.num_workers}")
        if self.loss not in LOSSES:
            raise ConfigError(f"training.loss: unknown loss '{self.loss}'{did_you_mean(self.loss, LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"training.optimizer: unknown '{self.optimizer}'{did_you_mean(self.optimizer, OPTIMIZERS)}"
            )
        if self.schedule is not None and self.schedule not in SCHEDULERS:
            raise ConfigError(f"training.schedule: unknown '{self.schedule}'{did_you_mean(self.schedule, SCHEDULERS)}")
        if self.amp_dtype not in ("bfloat16", "float16"):
            raise ConfigError(f"training.amp_dtype must be 'bfloat16' or 'float16', got {self.amp_dtype!r}")
        if not 0.0 <= self.foreground_ratio <= 1.0:
            raise ConfigError(f"training.foreground_ratio must be in [0, 1], got {self.foreground_ratio}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"training.lr must be positive, got {self.lr}")
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ConfigError(f"training.max_time_s must be positive seconds, got {self.max_time_s}")

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> TrainingConfig:
        """Build from plain options (e.g. YAML); unknown keys raise with did-you-mean."""
        check_options("training", cls, options)
        return cls(**options)

    @property
    def learning_rate(self) -> float:
        """``lr`` or the optimiser's default."""
        return self.lr if self.lr is not None else (0.01 if self.optimizer == "sgd" else 3e-4)

    @property
    def lr_schedule(self) -> str:
        """``schedule`` or the optimiser's default."""
        return self.schedule or ("poly" if self.optimizer == "sgd" else "cosine")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for checkpoints and logs)."""
        out = _lists(dataclasses.asdict(self))
        out["cache_dir"] = str(self.cache_dir) if self.cache_dir else None
        return out


def _lists(value: Any) -> Any:
    """Tuples as lists, recursively (plain data for YAML, JSON and checkpoints)."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_lists(v) for v in value]
    return value


@dataclass(frozen=True)
class TrainResult:
    """What :meth:`Trainer.fit` produced.

    Attributes:
        out_dir: folder of this run (``.../fold_K`` or ``.../all``).
        best_checkpoint: best validation checkpoint (the last one when there is no validation).
        last_checkpoint: checkpoint after the last epoch (for resuming).
        log_csv: per-epoch log.
        curve_png: training-curve plot.
        metrics: validation metrics of the epoch ``best_checkpoint`` holds (per-class Dice, mean
            Dice or accuracy; empty without validation).
        epochs: epochs completed.
        stopped_early: whether early stopping or the time budget ended the run.
        best_epoch: the epoch ``best_checkpoint`` holds (-1 without validation).
        iterations: optimiser steps done (earlier sessions of a resumed run included).
        stopped_by: ``"completed"`` (every planned epoch), ``"time limit"``, ``"early stopping"``, or
            ``"SIGINT"``/``"SIGTERM"``: stopped by that signal (the epoch under way abandoned, ``last.pt`` holding
            ``epochs``; no ``best.pt``/``metrics.json`` written by this session).
    """

    out_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    log_csv: Path
    curve_png: Path
    metrics: dict[str, float]
    epochs: int
    stopped_early: bool = False
    best_epoch: int = -1
    iterations: int = 0
    stopped_by: str = "completed"
