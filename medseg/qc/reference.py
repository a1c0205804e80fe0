"""The model's own reference for its uncertainty: what its out-of-fold predictions measured.

Fixed thresholds on entropy or agreement describe one model; a less confident model (small training
set, a hard label) crosses them on every case, and then every case looks failed. ``medseg train --fold
all`` predicts each case with the fold that did not train on it; those predictions show, per label, how
uncertain this model is on cases it has not seen. :func:`build_reference` pools them (mean and spread
of each measurement, and the out-of-fold Dice), and :func:`referenced_score` scores a new case's
measurement by how far it lies on the bad side of that distribution:

    z = (value − mean) / spread · direction        (direction +1: higher is worse, −1: lower is worse)
    spread = max(std, SPREAD_FLOOR, SPREAD_FRACTION · |mean|)
    s = clip((z − 2) / 4, 0, 1)                     (one-sided: a case better than usual scores 0)

Folds cannot be compared out of fold (each case has one fold that did not train on it), so the
agreement between folds is scored against the level the out-of-fold Dice implies: the Jaccard distance
``1 − J`` is a metric, so two folds that each reach the label's usual Dice ``d`` with the truth
(``J = d / (2 − d)``) overlap each other with at least ``J_ab = 2 J − 1`` (Dice ``2 J_ab / (1 + J_ab)``);
an agreement below that bound means at least one fold did worse than usual. See :func:`fold_floor`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Measurements referenced per label: name → direction (+1: higher is worse, −1: lower is worse).
MEASURES: dict[str, int] = {
    "soft_dice": -1,
    "entropy": 1,
    "border_entropy": 1,
    "agreement.mirrors": -1,
}
#: Spread floors: with ~10 out-of-fold cases their std underestimates the spread between cases, so a
#: measurement must move by at least 0.05 (all are in [0, 1]) or 10 % of its mean per standard deviation.
SPREAD_FLOOR = 0.05
SPREAD_FRACTION = 0.10
#: |z| up to this is normal; this many more standard deviations score 1 (as the training comparisons).
Z_NORMAL = 2.0
Z_SPAN = 4.0


def label_values(measured: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Per predicted label value, the referenced measurements of one case.

    Args:
        measured: :func:`medseg.qc.measure.prediction_measurements` of a case (with the predictor's
            ``agreement`` and, for a fold ensemble, ``fold_uncertainty``: the folds' own measurements are
            used, the ones an out-of-fold prediction of one fold gives).

    Returns:
        label value → {measure name → value} (``agreement.mirrors`` only with mirrored passes).
    """
    uncertainty = measured.get("fold_uncertainty") or measured.get("uncertainty") or {}
    mirrors = (measured.get("agreement") or {}).get("mirrors") or {}
    out: dict[str, dict[str, float]] = {}
    for value, u in uncertainty.items():
        row = {m: float(u[m]) for m in MEASURES if m in u}
        if value in mirrors:
            row["agreement.mirrors"] = float(mirrors[value])
        out[str(value)] = row
    return out


def _stats(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "n": int(a.size)}


def build_reference(measured: Sequence[Mapping[str, Any]], dice: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Pool out-of-fold measurements into the reference.

    Args:
        measured: per out-of-fold case, its measurements (see :func:`label_values`).
        dice: per case, label value → Dice against the reference (NaN: label absent from both, left out).

    Returns:
        ``{"n": cases, "labels": {value: {measure: {"mean", "std", "n"}, "dice": {...}}}}``; a measure
        needs at least 2 cases that predicted the label.
    """
    per_label: dict[str, dict[str, list[float]]] = {}
    for case, d in zip(measured, dice):
        for value, row in label_values(case).items():
            for name, x in row.items():
                per_label.setdefault(value, {}).setdefault(name, []).append(x)
        for value, x in d.items():
            if np.isfinite(x):
                per_label.setdefault(str(value), {}).setdefault("dice", []).append(float(x))
    labels = {
        value: {name: _stats(xs) for name, xs in rows.items() if len(xs) >= 2}
        for value, rows in sorted(per_label.items(), key=lambda kv: int(kv[0]))
    }
    return {"n": len(measured), "labels": {k: v for k, v in labels.items() if v}}


def spread(stats: Mapping[str, float]) -> float:
    """The spread a measurement is scored with: ``max(std, SPREAD_FLOOR, SPREAD_FRACTION · |mean|)``."""
    return max(float(stats["std"]), SPREAD_FLOOR, SPREAD_FRACTION * abs(float(stats["mean"])))


def referenced_score(value: float, stats: Mapping[str, float], direction: int) -> tuple[float, float]:
    """``(s, z)``: the one-sided score of ``value`` against the reference ``stats`` (see the module docstring)."""
    z = (value - float(stats["mean"])) / spread(stats) * direction
    return min(max((z - Z_NORMAL) / Z_SPAN, 0.0), 1.0), z


def fold_floor(dice_mean: float) -> float:
    """The least Dice two folds that each reach ``dice_mean`` with the truth have with each other (Jaccard
    triangle inequality, see the module docstring), in [0, 1]."""
    j = dice_mean / (2.0 - dice_mean)
    jab = max(2.0 * j - 1.0, 0.0)
    return 2.0 * jab / (1.0 + jab)
