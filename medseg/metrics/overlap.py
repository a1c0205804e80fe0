"""Overlap and volume metrics: Dice, IoU, precision, recall, volume differences.

Conventions for empty masks (as in MetricsReloaded, chosen and tested here):

- both empty: Dice = IoU = precision = recall = 1, volume differences 0;
- reference empty, prediction not: Dice = IoU = 0, precision 0, recall NaN
  (no reference voxel to recall), relative volume difference NaN;
- prediction empty, reference not: Dice = IoU = 0, precision NaN (nothing was
  predicted), recall 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medseg.metrics.masks import MaskLike, binary, pair


@dataclass(frozen=True)
class Counts:
    """Voxel counts of one binary comparison: true/false positives, false negatives."""

    tp: int
    fp: int
    fn: int

    @classmethod
    def of(cls, pred: np.ndarray, ref: np.ndarray) -> Counts:
        tp = int(np.count_nonzero(pred & ref))
        return cls(tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(ref)) - tp)

    def dice(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 1.0 if denom == 0 else 2 * self.tp / denom

    def iou(self) -> float:
        denom = self.tp + self.fp + self.fn
        return 1.0 if denom == 0 else self.tp / denom

    def precision(self) -> float:
        if self.tp + self.fp == 0:
            return 1.0 if self.fn == 0 else float("nan")
        return self.tp / (self.tp + self.fp)

    def recall(self) -> float:
        if self.tp + self.fn == 0:
            return 1.0 if self.fp == 0 else float("nan")
        return self.tp / (self.tp + self.fn)


def _counts(prediction: MaskLike, reference: MaskLike, label: int | None) -> tuple[Counts, tuple[float, ...]]:
    p, r, sp = pair(prediction, reference, None)
    return Counts.of(binary(p, label), binary(r, label)), sp


def dice(prediction: MaskLike, reference: MaskLike, *, label: int | None = None) -> float:
    """Dice coefficient 2|P∩R| / (|P| + |R|) of ``label`` (all foreground when None); 1 when both empty.

    Args:
        prediction: label array ``(X, Y, Z)``/``(1, X, Y, Z)``, bool mask, or label Volume.
        reference: same shape as ``prediction``.
        label: the class to compare; None compares all non-zero voxels.
    """
    return _counts(prediction, reference, label)[0].dice()


def iou(prediction: MaskLike, reference: MaskLike, *, label: int | None = None) -> float:
    """Intersection over union (Jaccard) of ``label``; 1 when both empty."""
    return _counts(prediction, reference, label)[0].iou()


def precision(prediction: MaskLike, reference: MaskLike, *, label: int | None = None) -> float:
    """TP / (TP + FP); NaN when nothing is predicted but the reference is not empty."""
    return _counts(prediction, reference, label)[0].precision()


def recall(prediction: MaskLike, reference: MaskLike, *, label: int | None = None) -> float:
    """TP / (TP + FN) (sensitivity); NaN when the reference is empty but the prediction is not."""
    return _counts(prediction, reference, label)[0].recall()


def volume_difference(
    prediction: MaskLike,
    reference: MaskLike,
    *,
    label: int | None = None,
    spacing: Sequence[float] | float | None = None,
) -> tuple[float, float]:
    """Absolute volume difference |Vp − Vr| in mL and relative difference (Vp − Vr)/Vr in %.

    The relative difference is 0 when both are empty and NaN when only the reference is.
    The voxel volume comes from ``spacing`` (mm), else from a Volume argument (its affine).
    """
    p, r, sp = pair(prediction, reference, spacing)
    voxel_ml = float(np.prod(sp)) / 1000.0
    vp = float(np.count_nonzero(binary(p, label))) * voxel_ml
    vr = float(np.count_nonzero(binary(r, label))) * voxel_ml
    if vr == 0:
        rel = 0.0 if vp == 0 else float("nan")
    else:
        rel = 100.0 * (vp - vr) / vr
    return abs(vp - vr), rel
