"""Evaluating folders of predictions against references: pairing, per-case rows, CSV/JSON reports."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.errors import GeometryError, InputError
from medseg.io import image_suffix, read, write_text_atomic
from medseg.metrics.evaluation import METRICS, evaluate_case, summarize


def case_id(path: Path) -> str:
    """File name without its image suffix (``case_001.nii.gz`` → ``case_001``)."""
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


def _files(path: Path, what: str) -> dict[str, Path]:
    if not path.exists():
        raise InputError(f"{what} {path}: no such file or folder")
    if path.is_file():
        return {case_id(path): path}
    found = {
        case_id(p): p for p in sorted(path.iterdir()) if p.is_file() and image_suffix(p) and not p.name.startswith(".")
    }
    if not found:
        raise InputError(f"{what} folder {path} holds no image files (.nii.gz, .nrrd, .mha, ...)")
    return found


def pair_cases(pred: Path, gt: Path) -> list[tuple[str, Path, Path]]:
    """``(case_id, prediction, reference)`` pairs, matched by case id.

    Two single files are paired whatever their names.

    Raises:
        InputError: a reference without a prediction (or the reverse), or no pairs at all.
    """
    if pred.is_file() and gt.is_file():
        return [(case_id(gt), pred, gt)]
    p, g = _files(pred, "--pred"), _files(gt, "--gt")
    missing, extra = sorted(set(g) - set(p)), sorted(set(p) - set(g))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no prediction in {pred} for {', '.join(missing[:10])}")
        if extra:
            parts.append(f"no reference in {gt} for {', '.join(extra[:10])}")
        raise InputError("; ".join(parts) + " (files are paired by name without the image suffix)")
    return [(c, p[c], g[c]) for c in sorted(g)]


def evaluate_folders(
    pred: Path, gt: Path, *, labels: Sequence[int] | None = None, tolerance_mm: float = 1.0
) -> list[dict[str, Any]]:
    """Per-case, per-label rows (``case`` first) for every pair of files.

    Raises:
        GeometryError: a prediction and its reference lie on different grids (both files named).
    """
    rows = []
    for case, p, g in pair_cases(pred, gt):
        pv, gv = read(p), read(g)
        if not pv.grid.matches(gv.grid):
            raise GeometryError(
                f"{p} (shape {pv.spatial_shape}, spacing {tuple(round(s, 4) for s in pv.spacing)}) is not on the grid "
                f"of {g} (shape {gv.spatial_shape}, spacing {tuple(round(s, 4) for s in gv.spacing)}); "
                "predictions must be on the reference grid"
            )
        for row in evaluate_case(pv, gv, labels=labels, tolerance_mm=tolerance_mm):
            rows.append({"case": case, **row})
    return rows


def rows_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text with columns ``case, label`` and every metric (NaN written as ``nan``)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["case", "label", *METRICS], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def write_report(rows: Sequence[dict[str, Any]], csv_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Write the per-case CSV and the summary JSON (same name, ``.json``), both atomically."""
    summary = summarize(rows)
    json_path = (
        csv_path.with_suffix(".json") if csv_path.suffix.lower() != ".json" else csv_path.with_suffix(".summary.json")
    )
    write_text_atomic(csv_path, rows_to_csv(rows))
    write_text_atomic(json_path, json.dumps(_finite(summary), indent=2) + "\n")
    return csv_path, json_path, summary


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
