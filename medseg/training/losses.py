"""Segmentation and classification losses (MONAI's, wrapped), with deep supervision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.errors import ConfigError, did_you_mean

LossName = Literal["dice_ce", "dice", "ce", "dice_focal", "focal", "tversky"]
LOSSES = ("dice_ce", "dice", "ce", "dice_focal", "focal", "tversky")


def _segmentation_loss(name: str) -> nn.Module:
    from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, FocalLoss, TverskyLoss

    common: dict[str, Any] = {"to_onehot_y": True, "softmax": True, "batch": True, "smooth_nr": 1e-5, "smooth_dr": 1e-5}
    if name == "dice_ce":
        return DiceCELoss(**common)
    if name == "dice":
        return DiceLoss(**common)
    if name == "dice_focal":
        return DiceFocalLoss(**common)
    if name == "tversky":
        return TverskyLoss(to_onehot_y=True, softmax=True, batch=True, alpha=0.3, beta=0.7)
    if name == "focal":
        return FocalLoss(to_onehot_y=True, use_softmax=True, gamma=2.0)
    return _CrossEntropy()


class _CrossEntropy(nn.Module):
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits, target[:, 0].long())


class SegmentationLoss(nn.Module):
    """A segmentation loss on logits ``(B, K, *S)`` and labels ``(B, 1, *S)``.

    With deep supervision the network returns a list of logits (full resolution first);
    each gets the loss against the label downsampled (nearest) to its size, weighted
    ``1, 1/2, 1/4, ...`` (normalised), as in nnU-Net.

    Args:
        name: ``"dice_ce"`` (default, Dice + cross-entropy), ``"dice"``, ``"ce"``,
            ``"dice_focal"``, ``"focal"``, ``"tversky"`` (α 0.3, β 0.7).
    """

    def __init__(self, name: str = "dice_ce") -> None:
        super().__init__()
        if name not in LOSSES:
            raise ConfigError(f"unknown loss '{name}'{did_you_mean(name, LOSSES)}")
        self.name = name
        self.loss = _segmentation_loss(name)

    def forward(self, output: Tensor | Sequence[Tensor], target: Tensor) -> Tensor:
        """Weighted loss over the outputs; ``target`` integer ``(B, 1, *S)``."""
        outputs = [output] if isinstance(output, Tensor) else list(output)
        weights = torch.tensor([0.5**i for i in range(len(outputs))])
        weights = weights / weights.sum()
        total = outputs[0].new_zeros((), dtype=torch.float32)
        for w, out in zip(weights.tolist(), outputs):
            t = target
            if tuple(out.shape[2:]) != tuple(target.shape[2:]):
                t = F.interpolate(target.float(), size=tuple(out.shape[2:]), mode="nearest").to(target.dtype)
            total = total + w * self.loss(out.float(), t.long() if self.name == "ce" else t.float())
        return total


class ClassificationLoss(nn.Module):
    """Cross-entropy on logits ``(B, N)`` and class indices ``(B,)``."""

    def __init__(self, name: str = "ce") -> None:
        super().__init__()
        if name not in ("ce", "dice_ce"):
            raise ConfigError(f"the classifier trains with loss 'ce', got '{name}'")

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean cross-entropy."""
        return F.cross_entropy(output.float(), target.long())
