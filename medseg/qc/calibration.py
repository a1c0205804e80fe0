"""Calibration of QC: out-of-fold predictions teach what Dice a case's signals predict, per label.

``medseg train --fold all`` predicts every case with the fold that did not train on it (to choose the
post-processing, :mod:`medseg.planning.postprocessing`). Each of those predictions gives, per label,
the feature ``x = soft_dice · (1 − M_label)`` (:meth:`medseg.qc.score.Assessment.features`: the
probabilities' own expected Dice, discounted by the evidence that the label's mask failed, in [0, 1])
and the true Dice after the chosen post-processing. Per label the fit is a line through the origin,
``Dice ≈ ratio · x`` (least squares): out-of-fold cases are mostly good ones, so they show the level
(how far the network's own expectation is from the truth) but not the slope of a failure; the origin
supplies that (no confidence left, no Dice expected). It is stored in every fold's checkpoint, in the
training summary (``calibration``), and gives ``qc_predicted_dice`` per label.

Calibrations written before the feature existed (``feature: qc_score``: ``intercept + slope · qc_score``)
still predict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: The feature the current calibrations are fitted on.
FEATURE = "expected_dice"


def fit_calibration(features: Sequence[Mapping[str, float]], dice: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """The per-label fit of Dice on the feature.

    Args:
        features: per out-of-fold case, label value (str) → feature ``x`` in [0, 1] (labels the case did
            not predict are absent: their feature is 0).
        dice: per case, label value (str) → Dice after post-processing (NaN where the label is absent from
            both prediction and reference: left out).

    Returns:
        ``{"feature": "expected_dice", "labels": {value: {"ratio", "n", "rmse", "mae"}}}``; labels with fewer
        than 2 cases, or whose features are all 0, are left out.
    """
    labels: dict[str, Any] = {}
    for value in sorted({k for d in dice for k in d}):
        y = np.array([d.get(value, np.nan) for d in dice], dtype=np.float64)
        x = np.array([f.get(value, 0.0) for f in features], dtype=np.float64)
        keep = np.isfinite(y)
        x, y = x[keep], y[keep]
        if keep.sum() < 2 or not np.any(x > 0):
            continue
        ratio = float(np.dot(x, y) / np.dot(x, x))
        error = np.clip(ratio * x, 0.0, 1.0) - y
        labels[value] = {
            "ratio": ratio,
            "n": int(keep.sum()),
            "rmse": float(np.sqrt(np.mean(error**2))),
            "mae": float(np.mean(np.abs(error))),
        }
    return {"feature": FEATURE, "labels": labels}


def predicted_dice(
    calibration: Mapping[str, Any], qc_score: float, features: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Per calibrated label, the Dice the calibration predicts (clipped to [0, 1]).

    Args:
        calibration: :func:`fit_calibration`'s record (or an older ``qc_score`` one).
        qc_score: the case's score (older calibrations only).
        features: label value → feature (absent: the label was not predicted, feature 0).
    """
    out = {}
    features = features or {}
    for value, fit in (calibration.get("labels") or {}).items():
        if "ratio" in fit:
            guess = fit["ratio"] * features.get(str(value), 0.0)
        else:
            guess = fit["intercept"] + fit["slope"] * qc_score
        out[str(value)] = float(min(max(guess, 0.0), 1.0))
    return out


def calibrate_out_of_fold(
    records: Sequence[Mapping[str, Any]],
    dice: Sequence[Mapping[str, float]],
    summaries: Mapping[int, Mapping[str, Any]],
    *,
    labels: Mapping[int, str],
    channels: list[str],
) -> dict[str, Any]:
    """Reference and calibration from the out-of-fold predictions, consistent with prediction.

    The measurements of every out-of-fold case build the reference
    (:func:`medseg.qc.reference.build_reference`); each case is then assessed again against it (and its
    fold's training summary), as a prediction will be, and its features are fitted to its Dice
    (:func:`fit_calibration`).

    Args:
        records: per case its ``CASE.qc.json`` record: ``fold``, ``measured``
            (:func:`medseg.qc.measure.prediction_measurements` with the predictor's additions) and ``source``
            (:func:`medseg.qc.measure.input_description`). Records without ``measured`` (written before it
            was stored) fall back to their stored ``features``.
        dice: per case, label value → Dice after post-processing (NaN: label absent from both).
        summaries: fold → that fold's training summary.
        labels, channels: as :func:`medseg.qc.score.assess`.

    Returns:
        :func:`fit_calibration`'s record with ``reference`` added.
    """
    from medseg.qc.reference import build_reference
    from medseg.qc.score import assess

    measured = [r["measured"] for r in records if "measured" in r]
    reference = build_reference(measured, [d for r, d in zip(records, dice) if "measured" in r]) if measured else {}
    features = []
    for record in records:
        if "measured" not in record:
            features.append(dict(record.get("features") or {}))
            continue
        summary = {k: v for k, v in summaries.get(int(record.get("fold", 0)), {}).items() if k != "calibration"}
        qc = assess(
            record["measured"], record["source"], summary, labels=labels, channels=channels, reference=reference
        )
        features.append(qc.features())
    return {**fit_calibration(features, dice), "reference": reference}
