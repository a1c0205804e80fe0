"""Per-case, per-label evaluation and the summary over cases."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from medseg.metrics.masks import MaskLike, pair
from medseg.metrics.overlap import Counts
from medseg.metrics.surface import surface_distances

#: Metric columns of :func:`evaluate_case`, in report order.
METRICS: tuple[str, ...] = (
    "dice",
    "iou",
    "precision",
    "recall",
    "hausdorff95_mm",
    "assd_mm",
    "surface_dice",
    "volume_pred_ml",
    "volume_ref_ml",
    "abs_volume_diff_ml",
    "rel_volume_diff_pct",
)


def present_labels(*arrays: np.ndarray) -> list[int]:
    """Sorted non-zero labels found in any of ``arrays``."""
    found: set[int] = set()
    for a in arrays:
        found.update(int(v) for v in np.unique(a) if v != 0)
    return sorted(found)


def evaluate_case(
    prediction: MaskLike,
    reference: MaskLike,
    *,
    labels: Sequence[int] | None = None,
    tolerance_mm: float = 1.0,
    spacing: Sequence[float] | float | None = None,
) -> list[dict[str, Any]]:
    """All metrics for each label of one case.

    Args:
        prediction: label map ``(X, Y, Z)``/``(1, X, Y, Z)`` or label Volume.
        reference: the ground truth on the same grid.
        labels: classes to evaluate; default: every non-zero label in either map.
        tolerance_mm: tolerance of the normalised surface Dice, mm.
        spacing: voxel size (mm); default: the Volumes' spacing, else 1 mm.

    Returns:
        one dict per label with ``label`` and every name in :data:`METRICS`
        (volumes in mL, distances in mm). Empty-mask conventions are those of
        :mod:`medseg.metrics.overlap` and :mod:`medseg.metrics.surface`.

    Raises:
        GeometryError: the two maps are not on the same grid.
    """
    p, r, sp = pair(prediction, reference, spacing)
    voxel_ml = float(np.prod(sp)) / 1000.0
    rows = []
    for lab in present_labels(p, r) if labels is None else [int(v) for v in labels]:
        pm, rm = p == lab, r == lab
        c = Counts.of(pm, rm)
        d = surface_distances(pm, rm, sp)
        vp, vr = (c.tp + c.fp) * voxel_ml, (c.tp + c.fn) * voxel_ml
        rel = (0.0 if vp == 0 else float("nan")) if vr == 0 else 100.0 * (vp - vr) / vr
        rows.append(
            {
                "label": lab,
                "dice": c.dice(),
                "iou": c.iou(),
                "precision": c.precision(),
                "recall": c.recall(),
                "hausdorff95_mm": d.hausdorff(95.0),
                "assd_mm": d.average_symmetric(),
                "surface_dice": d.surface_dice(tolerance_mm),
                "volume_pred_ml": vp,
                "volume_ref_ml": vr,
                "abs_volume_diff_ml": abs(vp - vr),
                "rel_volume_diff_pct": rel,
            }
        )
    return rows


def summarize(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float | int]]]:
    """Mean, median, std (NaN values left out and counted as ``n_nan``) per label and metric.

    Returns:
        ``{label: {metric: {"mean", "median", "std", "n", "n_nan"}}}`` with labels as strings
        (JSON keys); values are None where no case has a defined value.
    """
    by_label: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        per = by_label.setdefault(str(row["label"]), {m: [] for m in METRICS})
        for m in METRICS:
            per[m].append(float(row[m]))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for lab, per in by_label.items():
        out[lab] = {}
        for m, values in per.items():
            v = np.asarray(values, dtype=np.float64)
            ok = v[np.isfinite(v)]
            out[lab][m] = {
                "mean": float(ok.mean()) if ok.size else None,
                "median": float(np.median(ok)) if ok.size else None,
                "std": float(ok.std()) if ok.size else None,
                "n": int(ok.size),
                "n_nan": int(v.size - ok.size),
            }
    return out
