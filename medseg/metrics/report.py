"""Evaluating folders of predictions against references: pairing, per-case rows, CSV/JSON reports."""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.core.labels import MAX_UNNAMED_LABELS, label_values
from medseg.core.volume import Volume
from medseg.errors import InputError, InputWarning
from medseg.io import file_stem, image_suffix, read, write_text_atomic
from medseg.metrics.evaluation import METRICS, evaluate_case, present_labels, summarize

#: Preference among a predict output's files when choosing the label map of a case.
_LABEL_MAP_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr")


def case_id(path: Path) -> str:
    """File name without its image suffix (``case_001.nii.gz`` → ``case_001``, ``c.seg.nrrd`` → ``c``)."""
    return file_stem(path)


def _label_map_rank(path: Path) -> int:
    name = path.name.lower()
    if name.endswith(".seg.nrrd"):
        return len(_LABEL_MAP_SUFFIXES)  # a Slicer segmentation: only when nothing plainer exists
    return next((i for i, s in enumerate(_LABEL_MAP_SUFFIXES) if name.endswith(s)), -1)


def _from_provenance(folder: Path) -> dict[str, Path] | None:
    """Label maps of a ``medseg predict`` output folder, chosen from each case's provenance sidecar."""
    from medseg.batch.provenance import SUFFIX

    sidecars = sorted(folder.glob(f"*{SUFFIX}"))
    if not sidecars:
        return None
    found: dict[str, Path] = {}
    for sidecar in sidecars:
        try:
            record = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{sidecar}: unreadable provenance ({exc}); run medseg predict again") from exc
        outputs = [folder / o["path"] for o in (record.get("outputs") or {}).values() if isinstance(o, dict)]
        maps = sorted((p for p in outputs if _label_map_rank(p) >= 0), key=_label_map_rank)
        if not maps:
            raise InputError(
                f"{sidecar}: case '{record.get('case_id')}' has no label map among its outputs "
                f"({', '.join(p.name for p in outputs) or 'none'}); predict with the nifti exporter (-e nifti)"
            )
        found[str(record.get("case_id") or sidecar.name[: -len(SUFFIX)])] = maps[0]
    return found


def _files(path: Path, what: str, skipped: list[str]) -> dict[str, Path]:
    if not path.exists():
        raise InputError(f"{what} {path}: no such file or folder")
    if path.is_file():
        return {case_id(path): path}
    if what == "--pred":
        chosen = _from_provenance(path)
        if chosen is not None:
            return chosen
    found: dict[str, Path] = {}
    for p in sorted(path.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        rank = _label_map_rank(p)
        if rank < 0:
            if image_suffix(p) or p.suffix.lower() in (".json", ".csv", ".stl", ".obj", ".ply", ".html", ".dcm"):
                skipped.append(f"{p.name} (not a 3D label map)")
            continue
        cid = case_id(p)
        if cid not in found or rank < _label_map_rank(found[cid]):
            if cid in found:
                skipped.append(f"{found[cid].name} ({p.name} is used for case '{cid}')")
            found[cid] = p
        else:
            skipped.append(f"{p.name} ({found[cid].name} is used for case '{cid}')")
    if not found:
        raise InputError(f"{what} folder {path} holds no label maps (.nii.gz, .nrrd, .mha, ...)")
    return found


def pair_cases(pred: Path, gt: Path) -> list[tuple[str, Path, Path]]:
    """``(case_id, prediction, reference)`` pairs, matched by case id.

    A ``medseg predict`` output folder is read through its provenance sidecars (the label map
    of each case, whatever else was exported); other folders give their label maps (NIfTI,
    NRRD, MHA; a Slicer ``.seg.nrrd`` only when no plainer file exists for the case), and
    previews, meshes, statistics and other files are left out with a warning. Two single
    files are paired whatever their names.

    Raises:
        InputError: a reference without a prediction (or the reverse), or no pairs at all.
    """
    if pred.is_file() and gt.is_file():
        return [(case_id(gt), pred, gt)]
    skipped: list[str] = []
    p, g = _files(pred, "--pred", skipped), _files(gt, "--gt", skipped)
    if skipped:
        warnings.warn(f"left out of the evaluation: {'; '.join(skipped)}", InputWarning, stacklevel=2)
    missing, extra = sorted(set(g) - set(p)), sorted(set(p) - set(g))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no prediction in {pred} for {', '.join(missing[:10])}")
        if extra:
            parts.append(f"no reference in {gt} for {', '.join(extra[:10])}")
        raise InputError("; ".join(parts) + " (files are paired by name without the image suffix)")
    return [(c, p[c], g[c]) for c in sorted(g)]


def read_label_map(path: Path, what: str) -> Volume:
    """A one-channel label map, checked: whole, non-negative values (see :func:`medseg.core.labels.label_values`).

    A DICOM SEG or RTSTRUCT is refused: its labels depend on the image series it is drawn on and
    on the ROI→label mapping, which only a dataset carries; ``medseg dataset convert`` reads it
    the way training does (:func:`medseg.training.cache.read_case`) into a label map to evaluate against.

    Raises:
        InputError: several channels, values that are not labels, or a SEG/RTSTRUCT (one line naming the file).
    """
    from medseg.io.clinical import file_label_kind

    kind = file_label_kind(path, force=path.suffix.lower() == ".dcm")
    if kind is not None:
        raise InputError(
            f"{path}: {what} is a DICOM {kind.upper()}, not a label map; convert the export with 'medseg dataset "
            "convert EXPORT -o DatasetNNN_Name --labels FILE' (ROIs on the image grid, in your label order) and "
            "evaluate against its labelsTr/ folder"
        )
    vol = read(path)
    if vol.n_channels != 1:
        raise InputError(
            f"{path}: {what} has {vol.n_channels} channels (shape {tuple(vol.array.shape)}); evaluate takes "
            "one-channel label maps (a preview PNG or an RGB image is not one)"
        )
    fix = "give the label map (e.g. the CASE.nii.gz that medseg predict writes)"
    return vol.replace(array=label_values(vol.numpy(), path, fix=fix), kind="label")


def check_plausible_labels(
    case: str, pred_path: Path, pred: np.ndarray, ref: np.ndarray, declared: Sequence[int] | None
) -> None:
    """Refuse a "label map" that is an image; warn about labels absent from the reference or the declared labels.

    Raises:
        InputError: the prediction holds far more distinct values than any label map.
    """
    p_labels, r_labels = set(present_labels(pred)), set(present_labels(ref))
    if len(p_labels) > MAX_UNNAMED_LABELS and len(p_labels) > 3 * max(len(r_labels), 1):
        raise InputError(
            f"{pred_path}: holds {len(p_labels)} distinct values against {len(r_labels)} labels in the reference; "
            "it looks like an image, not a label map: give the label map (e.g. the CASE.nii.gz of medseg predict)"
        )
    allowed = set(declared) if declared is not None else None
    unexpected = sorted(p_labels - r_labels - (allowed or set()))
    if allowed is not None:
        undeclared = sorted(p_labels - allowed)
        if undeclared:
            warnings.warn(
                f"{case}: prediction holds labels {undeclared} that are not among the declared labels "
                f"{sorted(allowed)}; they are not evaluated",
                InputWarning,
                stacklevel=2,
            )
    elif unexpected:
        warnings.warn(
            f"{case}: prediction holds labels {unexpected} that are absent from the reference (scored as "
            "false positives, Dice 0)",
            InputWarning,
            stacklevel=2,
        )


def evaluate_folders(
    pred: Path, gt: Path, *, labels: Sequence[int] | None = None, tolerance_mm: float = 1.0
) -> list[dict[str, Any]]:
    """Per-case, per-label rows (``case`` first) for every pair of files.

    Args:
        pred: a prediction file, or a folder (a ``medseg predict`` output folder, or label maps).
        gt: the reference file or folder.
        labels: the labels to evaluate (default: every label in either map, background excluded).
        tolerance_mm: surface Dice tolerance.

    Raises:
        InputError: a file is not a label map (fractional, negative or image-like values; several
            channels), or files cannot be paired.
        GeometryError: a prediction and its reference lie on different grids (both files named, and what differs).
    """
    if labels is not None and 0 in labels:
        raise InputError("--labels: 0 is the background and is not evaluated; give foreground labels such as 1,2")
    rows = []
    for case, p, g in pair_cases(pred, gt):
        pv, gv = read_label_map(p, "prediction"), read_label_map(g, "reference")
        gv.require_grid(
            pv.replace(meta={**pv.meta, "source": str(p)}),
            "prediction",
            fix="predictions must be on the reference's grid (medseg predict writes them on the input's grid)",
        )
        check_plausible_labels(case, p, pv.numpy(), gv.numpy(), labels)
        for row in evaluate_case(pv, gv, labels=labels, tolerance_mm=tolerance_mm):
            rows.append({"case": case, **row})
    return rows


def label_names(pred: Path) -> dict[int, str]:
    """Label names recorded by ``medseg predict`` in a prediction folder's provenance ({} when none)."""
    from medseg.batch.provenance import SUFFIX

    if not pred.is_dir():
        return {}
    for sidecar in sorted(pred.glob(f"*{SUFFIX}"))[:1]:
        try:
            labels = json.loads(sidecar.read_text(encoding="utf-8")).get("pipeline", {}).get("labels") or {}
            return {int(k): str(v) for k, v in labels.items()}
        except (OSError, ValueError, AttributeError):
            return {}
    return {}


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
