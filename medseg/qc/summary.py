"""The training summary a model carries: what its training cases looked like, for per-case QC.

Each training case is measured once, when the training cache pre-processes it
(:func:`case_summary`, stored in the cache entry's ``meta.json``); :func:`training_summary`
pools the training cases of a fold into the compact record ``Trainer`` saves in every
checkpoint (``Checkpoint.training_summary``). Nothing here reads an image again.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg.core.volume import Volume
from medseg.qc.measure import grid_measurements, input_description

if TYPE_CHECKING:
    from medseg.pipeline.pipeline import Pipeline

#: Layout version of the summary; bumped when fields change meaning.
SUMMARY_VERSION = 1
#: The intensity statistics QC compares, per channel.
INTENSITY_KEYS = ("percentile_00_5", "median", "percentile_99_5", "mean", "std")


def case_summary(raw: Volume, image: np.ndarray, label: np.ndarray, voxel_mm3: float) -> dict[str, Any]:
    """One training case's QC entry.

    Args:
        raw: the case as read (before pre-processing): its spacing, shape, orientation and modality.
        image: ``(C, X, Y, Z)`` pre-processed image.
        label: ``(1, X, Y, Z)`` or ``(X, Y, Z)`` label on the pre-processed grid.
        voxel_mm3: voxel volume of the pre-processed grid, mm³.
    """
    lab = np.asarray(label)
    lab = lab[0] if lab.ndim == 4 else lab
    return {
        "input": input_description(raw.meta, raw.spacing, raw.spatial_shape, raw.orientation),
        **grid_measurements(np.asarray(image), lab, voxel_mm3),
    }


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max())}


def training_summary(cases: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Pool the :func:`case_summary` entries of the training cases (entries that are None are left out).

    Returns:
        ``{}`` without entries; else ``version``, ``n_cases``, ``spacing`` (``min``/``max`` per sorted axis,
        mm), ``orientations`` and ``modalities`` seen, ``intensity`` (per channel, per statistic of
        :data:`INTENSITY_KEYS`: mean/std/min/max over cases, in pre-processed units), ``labels`` (per label
        value: ``present`` cases and mean/std/min/max over the cases that have it of ``volume_ml``,
        ``components`` and ``border_fraction``) and ``foreground_fraction`` (mean/std/min/max).
    """
    entries = [c for c in cases if c]
    if not entries:
        return {}
    spacings = np.array([e["input"]["spacing"] for e in entries], dtype=np.float64)
    n_channels = min(len(e["channels"]) for e in entries)
    intensity = []
    for ch in range(n_channels):
        stats = [e["channels"][ch] for e in entries if e["channels"][ch].get("n", 0) > 0]
        intensity.append({k: _mean_std([s[k] for s in stats]) for k in INTENSITY_KEYS} if stats else {})
    values = sorted({int(v) for e in entries for v in e["labels"]})
    labels: dict[str, Any] = {}
    for v in values:
        present = [e["labels"][str(v)] for e in entries if str(v) in e["labels"]]
        labels[str(v)] = {
            "present": len(present),
            **{k: _mean_std([p[k] for p in present]) for k in ("volume_ml", "components", "border_fraction")},
        }
    return {
        "version": SUMMARY_VERSION,
        "n_cases": len(entries),
        "spacing": {"min": spacings.min(axis=0).tolist(), "max": spacings.max(axis=0).tolist()},
        "orientations": sorted({e["input"]["orientation"] for e in entries}),
        "modalities": sorted({e["input"]["modality"] for e in entries if e["input"]["modality"]}),
        "intensity": intensity,
        "labels": labels,
        "foreground_fraction": _mean_std([e["foreground_fraction"] for e in entries]),
    }


def summarise_dataset(
    pipeline: Pipeline, data: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The training summary of a labelled dataset under ``pipeline``'s pre-processing, as ``Trainer`` records it:
    for a checkpoint trained before summaries were recorded (see
    :func:`medseg.training.checkpoint.set_training_summary`).

    Args:
        pipeline: the pipeline the model was trained with (its pre-processing and ``input.spacing_tolerance``).
        data: the training dataset (anything :func:`medseg.training.load_dataset` opens).
        cache_dir: training cache to use (default: a temporary folder, removed afterwards).
    """
    from medseg.training import load_dataset
    from medseg.training.cache import prepare_dataset

    steps = list(pipeline.preprocess)

    def preprocess(volume: Volume) -> Volume:
        for step in steps:
            volume = step(volume)
        return volume

    dataset = load_dataset(data)
    tolerance = pipeline.spec.input.spacing_tolerance
    if cache_dir is not None:
        cases = prepare_dataset(dataset, preprocess, Path(cache_dir), spacing_tolerance=tolerance)
        return training_summary([c.summary for c in cases])
    with tempfile.TemporaryDirectory(prefix="medseg-qc-") as tmp:
        cases = prepare_dataset(dataset, preprocess, Path(tmp), spacing_tolerance=tolerance)
        return training_summary([c.summary for c in cases])
