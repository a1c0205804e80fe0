"""Optimisers and learning-rate schedules: SGD + Nesterov with polynomial decay, AdamW + cosine.

A schedule is a pure function of training progress (a fraction in [0, 1]), not a stateful
torch scheduler: resuming with more epochs, or a wall-clock budget, gives the schedule of the
new plan instead of replaying the old one (nnU-Net's ``PolyLRScheduler`` is also computed
from the current step).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

from medseg.errors import ConfigError, did_you_mean

OptimizerName = Literal["sgd", "adamw"]
SchedulerName = Literal["poly", "cosine", "constant"]
OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("poly", "cosine", "constant")


def build_optimizer(
    name: str, params: Iterable[nn.Parameter], *, lr: float, weight_decay: float, momentum: float = 0.99
) -> torch.optim.Optimizer:
    """``"sgd"`` (Nesterov, momentum 0.99 as nnU-Net) or ``"adamw"``."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer '{name}'{did_you_mean(name, OPTIMIZERS)}")


def lr_factor(schedule: str, progress: float) -> float:
    """Multiplier of the initial learning rate at ``progress`` ∈ [0, 1] of the run.

    ``"poly"``: ``(1 − progress)^0.9``; ``"cosine"``: ``(1 + cos(π·progress)) / 2``; ``"constant"``: 1.

    Raises:
        ConfigError: unknown schedule (did-you-mean).
    """
    p = min(max(float(progress), 0.0), 1.0)
    if schedule == "poly":
        return (1.0 - p) ** 0.9
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    if schedule == "constant":
        return 1.0
    raise ConfigError(f"unknown lr schedule '{schedule}'{did_you_mean(schedule, SCHEDULERS)}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
