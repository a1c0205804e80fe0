"""Calibration of the QC score: out-of-fold ``qc_score`` → Dice per label, a monotone linear fit.

``medseg train --fold all`` predicts every case with the fold that did not train on it (to choose the
post-processing, :mod:`medseg.planning.postprocessing`); the QC score of those predictions and their
Dice after the chosen post-processing are the calibration data. Per label the fit is
``Dice ≈ intercept + slope · qc_score`` by least squares with ``slope ≤ 0`` (a higher score never predicts
a higher Dice; a positive slope becomes 0 and the intercept the mean Dice). It is stored in every fold's
checkpoint, in the training summary (``calibration``), and gives ``qc_predicted_dice`` per label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def fit_calibration(scores: Sequence[float], dice: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """The per-label fit of Dice on ``qc_score``.

    Args:
        scores: ``qc_score`` of each out-of-fold case.
        dice: per case, label value (str) → Dice after post-processing (NaN where the label is absent from
            both prediction and reference: left out).

    Returns:
        ``{"feature": "qc_score", "labels": {value: {"intercept", "slope", "n", "rmse"}}}``; labels with fewer
        than 2 cases are left out.
    """
    x_all = np.asarray(scores, dtype=np.float64)
    labels: dict[str, Any] = {}
    for value in sorted({k for d in dice for k in d}):
        y = np.array([d.get(value, np.nan) for d in dice], dtype=np.float64)
        keep = np.isfinite(y)
        if keep.sum() < 2:
            continue
        x, y = x_all[keep], y[keep]
        if np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
        else:
            slope, intercept = 0.0, float(y.mean())
        if slope > 0:  # monotone: a higher qc_score never predicts a better mask
            slope, intercept = 0.0, float(y.mean())
        rmse = float(np.sqrt(np.mean((intercept + slope * x - y) ** 2)))
        labels[value] = {"intercept": float(intercept), "slope": float(slope), "n": int(keep.sum()), "rmse": rmse}
    return {"feature": "qc_score", "labels": labels}


def predicted_dice(calibration: Mapping[str, Any], qc_score: float) -> dict[str, float]:
    """Per calibrated label, the Dice the calibration predicts for ``qc_score`` (clipped to [0, 1])."""
    out = {}
    for value, fit in (calibration.get("labels") or {}).items():
        out[str(value)] = float(min(max(fit["intercept"] + fit["slope"] * qc_score, 0.0), 1.0))
    return out
