"""k-fold cross-validation splits saved as ``splits.json``, and a summary over folds."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError
from medseg.io import write_text_atomic


def make_splits(case_ids: Sequence[str], n_folds: int = 5, seed: int = 12345) -> list[dict[str, list[str]]]:
    """Shuffle ``case_ids`` with ``seed`` and cut them into ``n_folds`` folds.

    Returns:
        ``[{"train": [...], "val": [...]}, ...]``, one entry per fold, ids sorted.
    """
    ids = sorted(case_ids)
    if n_folds < 2:
        raise ConfigError(
            f"cross-validation needs at least 2 folds, got {n_folds}; to train on every case without validation "
            "omit the fold (CLI: no --fold; Python: fold=None)"
        )
    if len(ids) < n_folds:
        fewer = f"use fewer folds (CLI: --folds {len(ids)}; Python: n_folds={len(ids)}), or " if len(ids) >= 2 else ""
        raise ConfigError(
            f"{len(ids)} case(s) cannot be split into {n_folds} folds; {fewer}train on every case without "
            "validation (CLI: no --fold; Python: fold=None)"
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    folds = np.array_split(order, n_folds)
    return [
        {"train": sorted(ids[i] for i in order if i not in set(f.tolist())), "val": sorted(ids[i] for i in f)}
        for f in folds
    ]


def load_or_create_splits(
    path: str | Path, case_ids: Sequence[str], n_folds: int = 5, seed: int = 12345
) -> list[dict[str, list[str]]]:
    """Read ``splits.json`` if it exists (so parallel folds agree), else create and save it.

    Raises:
        ConfigError: the saved splits are for other cases or another number of folds.
    """
    p = Path(path)
    if p.exists():
        splits = json.loads(p.read_text())
        saved = sorted({c for s in splits for c in s["val"]})
        if saved != sorted(case_ids) or len(splits) != n_folds:
            raise ConfigError(
                f"{p}: saved splits have {len(splits)} folds over {len(saved)} cases, but {n_folds} folds over "
                f"{len(case_ids)} cases are asked for; delete {p} to re-split"
            )
        return splits  # type: ignore[no-any-return]
    splits = make_splits(case_ids, n_folds, seed)
    write_text_atomic(p, json.dumps(splits, indent=1))
    return splits


def summarize_folds(out_dir: str | Path, n_folds: int | None = None) -> dict[str, Any]:
    """Mean and std of each final validation metric over ``fold_*/metrics.json``; writes ``summary.json``."""
    root = Path(out_dir)
    files = sorted(root.glob("fold_*/metrics.json"))
    if n_folds is not None:
        files = [f for f in files if int(f.parent.name.split("_")[1]) < n_folds]
    if not files:
        raise ConfigError(f"{root}: no fold_*/metrics.json; train the folds first")
    per_fold = {f.parent.name: json.loads(f.read_text()) for f in files}
    keys = sorted({k for m in per_fold.values() for k, v in m.items() if isinstance(v, (int, float))})
    summary: dict[str, Any] = {"folds": sorted(per_fold), "per_fold": per_fold, "mean": {}, "std": {}}
    for k in keys:
        vals = [float(m[k]) for m in per_fold.values() if isinstance(m.get(k), (int, float)) and not math.isnan(m[k])]
        if vals:
            summary["mean"][k] = float(np.mean(vals))
            summary["std"][k] = float(np.std(vals))
    write_text_atomic(root / "summary.json", json.dumps(summary, indent=1))
    return summary
