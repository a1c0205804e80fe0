"""One training step, shared by the Trainer and the planner's probes, so a plan times exactly the step training runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

    from medseg.core.precision import PrecisionChoice
    from medseg.training.config import TrainingConfig


def training_parts(
    network: nn.Module, settings: TrainingConfig, device: torch.device
) -> tuple[torch.optim.Optimizer, PrecisionChoice, torch.amp.GradScaler]:
    """The optimiser, forward precision and gradient scaler ``settings`` ask for, on ``device``."""
    import torch

    from medseg.core.precision import training_precision
    from medseg.training.optim import build_optimizer

    optimizer = build_optimizer(
        settings.optimizer, network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    precision = training_precision(settings.amp, settings.amp_dtype, device)
    scaler = torch.amp.GradScaler("cuda", enabled=precision.dtype == torch.float16 and device.type == "cuda")
    return optimizer, precision, scaler


def training_step(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    scaler: torch.amp.GradScaler,
    precision: PrecisionChoice,
    device: torch.device,
    grad_clip: float | None,
    x: torch.Tensor,
    y: torch.Tensor,
) -> float:
    """One optimiser step on a batch ``x`` ``(B, C, *patch)``, target ``y`` ``(B, 1, *patch)``; returns the loss."""
    from torch import nn

    optimizer.zero_grad(set_to_none=True)
    with precision.autocast(device):
        out = network(x)
    loss = loss_fn(out, y)
    scaler.scale(loss).backward()
    if grad_clip is not None:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(network.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())
