"""Which QC signals carry information on a benchmark: per signal and raw measurement, its AUROC alone for
"Dice < bad" on the held-out cases and its correlation with Dice on the out-of-fold cases.

Signals are pooled over labels per case (the largest score of that kind, e.g. ``volume`` = the most
implausible label volume); raw measurements likewise take the worst label (lowest expected Dice or
agreement, highest entropy or |volume z|; a label the model did not predict counts as worst). Every column
is oriented so that higher means worse, so an AUROC of 0.5 is chance and 1 is perfect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.qc.reference import label_values

#: Raw measurement → (how the worst label is taken, value of a label not predicted, orientation: +1 higher is worse).
RAW: dict[str, tuple[Callable[[Sequence[float]], float], float, int]] = {
    "soft_dice": (min, 0.0, -1),
    "entropy": (max, 1.0, 1),
    "border_entropy": (max, 1.0, 1),
    "agreement.mirrors": (min, 0.0, -1),
    "agreement.folds": (min, 0.0, -1),
}


def raw_measurements(record: Mapping[str, Any], labels: Sequence[str]) -> dict[str, float]:
    """Per raw measurement, the case's worst label (oriented: higher is worse), from a QC record or an
    out-of-fold ``measured`` dict (``labels``: the label values, str)."""
    rows = label_values(record)
    folds = (record.get("agreement") or {}).get("folds") or {}
    out: dict[str, float] = {}
    for name, (worst, missing, sign) in RAW.items():
        if name == "agreement.folds":
            values = [float(folds.get(v, missing)) for v in labels] if folds else []
        else:
            values = [rows.get(v, {}).get(name, missing) for v in labels]
            values = values if any(name in r for r in rows.values()) else []
        if values:
            out[name] = sign * worst(values)
    z = [abs(s["z"]) for s in record.get("signals", []) if s["name"].startswith("volume.") and "z" in s]
    if record.get("signals"):
        out["volume |z|"] = max(z) if z else 0.0
    return out


def signal_scores(record: Mapping[str, Any]) -> dict[str, float]:
    """Per signal kind (its name without the label), the largest score over the case's labels."""
    out: dict[str, float] = {}
    for s in record.get("signals", []):
        parts = s["name"].split(".")
        kind = ".".join(parts[:2]) if parts[0] == "agreement" else parts[0]
        out[kind] = max(out.get(kind, 0.0), float(s["score"]))
    return out


def _pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 3 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def out_of_fold(cv_dir: Path, labels: Sequence[str]) -> tuple[list[dict[str, float]], list[float], list[int]]:
    """The out-of-fold cases of a run (``cv_predictions``): their raw measurements, mean Dice over the labels
    present in the reference or the prediction (before post-processing), and the fold that predicted each."""
    from qc_phantoms import case_dice

    import medseg

    raws, dice, folds = [], [], []
    for path in sorted(cv_dir.glob("*.qc.json")):
        record = json.loads(path.read_text())
        if "measured" not in record:
            continue
        case = path.name.removesuffix(".qc.json")
        pred = medseg.read(cv_dir / f"{case}.nii.gz").numpy()[0]
        d, _ = case_dice(pred, medseg.read(cv_dir / f"{case}_reference.nii.gz").numpy()[0])
        raws.append(raw_measurements(record["measured"], labels))
        dice.append(d)
        folds.append(int(record.get("fold", 0)))
    return raws, dice, folds


def _within(values: Sequence[float], folds: Sequence[int]) -> list[float]:
    """``values`` minus the mean of their fold (what is left once the folds' difference is taken out)."""
    a, f = np.asarray(values, dtype=np.float64), np.asarray(folds)
    return list(a - np.array([a[f == k].mean() for k in f]))


def table(
    records: Sequence[Mapping[str, Any]], dice: Sequence[float],
    oof: tuple[list[dict[str, float]], list[float], list[int]],
    labels: Sequence[str], bad_dice: float,
) -> list[str]:  # fmt: skip
    """The per-signal markdown table (AUROC on the held-out cases, correlation with Dice out of fold)."""
    from qc_phantoms import auroc

    bad = [d < bad_dice for d in dice]
    scores = [signal_scores(r) for r in records]
    raws = [raw_measurements(r, labels) for r in records]
    lines = [
        f"| signal or measurement (higher = worse) | AUROC alone, held-out (Dice < {bad_dice}) | "
        f"r with Dice, out of fold ({len(oof[1])} cases) | r within folds |",
        "|---|---:|---:|---:|",
    ]
    for kind in sorted({k for s in scores for k in s}):
        a = auroc([s.get(kind, 0.0) for s in scores], bad)
        lines.append(f"| signal `{kind}` (score) | {_g(a)} | – | – |")
    for name in [*RAW, "volume |z|"]:
        if not any(name in r for r in raws):
            continue
        a = auroc([r.get(name, 0.0) for r in raws], bad)
        got = [(r[name], d, k) for r, d, k in zip(*oof) if name in r]
        x, y, k = [g[0] for g in got], [g[1] for g in got], [g[2] for g in got]
        rho = _pearson(x, y) if got else None
        within = _pearson(_within(x, k), _within(y, k)) if got else None
        lines.append(f"| raw `{name}` (worst label) | {_g(a)} | {_g(rho)} | {_g(within)} |")
    return lines


def _g(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"
