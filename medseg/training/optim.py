"""Optimisers and learning-rate schedules: SGD + Nesterov with polynomial decay, AdamW + cosine."""

from __future__ import annotations

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


def build_scheduler(
    name: str, optimizer: torch.optim.Optimizer, max_epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: ``"poly"`` ``lr·(1 − e/E)^0.9``, ``"cosine"`` to 0, or ``"constant"``."""
    if name == "poly":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: max(0.0, 1 - e / max_epochs) ** 0.9)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs))
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    raise ConfigError(f"unknown lr schedule '{name}'{did_you_mean(name, SCHEDULERS)}")
