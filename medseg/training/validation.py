"""Validation on whole cases: sliding-window prediction and per-class Dice.

Dice follows :mod:`medseg.metrics.overlap` (one convention for training and ``medseg evaluate``):
a class absent from both the prediction and the reference scores 1 (a correct empty prediction),
so false positives in cases without the class lower the score that picks the best checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from medseg.metrics.overlap import Counts


def predict_case(
    network: nn.Module,
    image: Tensor,
    *,
    patch_size: Sequence[int],
    overlap: float = 0.5,
    batch_size: int = 4,
    precision: torch.dtype | None = None,
) -> Tensor:
    """Logits ``(K, *S)`` of one case ``image`` ``(C, *S)`` by Gaussian-blended sliding window.

    Uses :func:`medseg.inference.sliding_window_inference` (same meaning as MONAI's).
    """
    from medseg.inference import sliding_window_inference

    with torch.no_grad():
        logits = sliding_window_inference(
            image[None],
            network,
            patch_size=patch_size,
            overlap=overlap,
            blend="gaussian",
            batch_size=batch_size,
            precision=precision,
            output_device=image.device,
        )
    return logits[0]


def per_class_dice(prediction: Tensor, target: Tensor, labels: Sequence[int]) -> dict[int, float]:
    """Dice of each label value on integer maps of one shape (see :class:`medseg.metrics.overlap.Counts`)."""
    out = {}
    for c in labels:
        p = prediction == c
        t = target == c
        tp = int((p & t).sum())
        out[int(c)] = Counts(tp, int(p.sum()) - tp, int(t.sum()) - tp).dice()
    return out


def dice_summary(per_case: Sequence[Mapping[int, float]], names: Mapping[int, str]) -> dict[str, float]:
    """Mean Dice per class over cases (``val_dice_<name>``) and their mean (``val_dice_mean``)."""
    out: dict[str, float] = {}
    means = []
    for c, name in names.items():
        vals = [d[c] for d in per_case if c in d]
        m = sum(vals) / len(vals) if vals else float("nan")
        out[f"val_dice_{name}"] = m
        if vals:
            means.append(m)
    out["val_dice_mean"] = sum(means) / len(means) if means else float("nan")
    return out
