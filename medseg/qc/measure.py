"""Per-case QC measurements on the network grid: the same numbers for a training case and a prediction.

A training case is measured with its label (in the training cache, after pre-processing); a
prediction with its argmax, before inversion and post-processing. Both lie on the grid the
network sees, in the units it sees (after normalisation), so the two are comparable and a
prediction's measurement needs no second pass over the input and no full-size copy.

The statistics are the planning fingerprint's (:func:`medseg.planning.fingerprint.channel_stats`,
:func:`medseg.planning.fingerprint.label_stats`); this module adds the share of each label on the
outermost voxel layer (a mask cut by the field of view) and the softmax uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

#: Voxels per Z chunk while reducing the probabilities (bounded extra memory, as the predictor's softmax).
CHUNK_VOXELS = 1 << 22


def border_fractions(labels: np.ndarray) -> dict[str, float]:
    """Per foreground label of ``labels`` ``(X, Y, Z)``: the fraction of its voxels in the outermost voxel layer.

    A mask that the field of view cuts has a slab of voxels on the border; one inside the volume has none.
    """
    values = labels.astype(np.int64, copy=False)
    counts = np.bincount(values.ravel())
    shell = np.zeros_like(counts)
    for axis in range(3):
        for index in (0, -1):
            face = np.take(values, index, axis=axis)
            shell += np.bincount(face.ravel(), minlength=counts.size)
    # voxels on edges/corners are counted on several faces; an upper bound, exact for a flat cut
    return {str(v): min(float(shell[v]) / float(counts[v]), 1.0) for v in range(1, counts.size) if counts[v]}


def grid_measurements(image: np.ndarray, labels: np.ndarray, voxel_mm3: float) -> dict[str, Any]:
    """The QC measurements of an image and its labels on one grid.

    Args:
        image: ``(C, X, Y, Z)`` pre-processed intensities (the network's input).
        labels: ``(X, Y, Z)`` integer labels (a training label or a prediction's argmax).
        voxel_mm3: voxel volume of the grid, mm³.

    Returns:
        ``channels``: per channel the foreground (labels > 0) intensity statistics (mean, std, median,
        0.5/99.5 percentiles; ``{"n": 0}`` without foreground); ``labels``: per present label value its
        ``volume_ml``, ``components`` (26-connectivity) and ``border_fraction``; ``foreground_fraction``:
        share of the grid that is foreground.
    """
    from medseg.planning.fingerprint import channel_stats, label_stats

    foreground = labels > 0
    stats = label_stats(labels, voxel_mm3, holes=False)
    border = border_fractions(labels)
    return {
        "channels": [channel_stats(image[c][foreground], quantiles=False) for c in range(image.shape[0])],
        "labels": {
            k: {"volume_ml": v["volume_ml"], "components": v["components"], "border_fraction": border.get(k, 0.0)}
            for k, v in stats.items()
        },
        "foreground_fraction": float(foreground.mean()) if foreground.size else 0.0,
    }


def _z_chunks(shape: tuple[int, ...]) -> Iterator[slice]:
    plane = max(int(np.prod(shape[:-1])), 1)
    step = max(CHUNK_VOXELS // plane, 1)
    for z in range(0, int(shape[-1]), step):
        yield slice(z, min(z + step, int(shape[-1])))


def inner_rim(labels: np.ndarray) -> np.ndarray:
    """The voxels of ``labels`` ``(X, Y, Z)`` with a 6-neighbour of another label: the border of every label."""
    rim = np.zeros(labels.shape, dtype=bool)
    for axis in range(labels.ndim):
        n = labels.shape[axis]
        if n < 2:
            continue
        lo = [slice(None)] * labels.ndim
        hi = [slice(None)] * labels.ndim
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        differ = labels[tuple(lo)] != labels[tuple(hi)]
        rim[tuple(lo)] |= differ
        rim[tuple(hi)] |= differ
    return rim


def _top2(p: torch.Tensor) -> torch.Tensor:
    """The largest and second-largest of ``p`` ``(K, *spatial)`` over classes, ``(min(2, K), *spatial)``: a
    running pair over the K contiguous slices (a strided ``topk`` over the class axis is several times slower
    on the CPU for few classes)."""
    k = int(p.shape[0])
    if k < 2 or k > 32 or p.device.type != "cpu":
        return torch.topk(p, k=min(2, k), dim=0).values
    first, second = torch.maximum(p[0], p[1]), torch.minimum(p[0], p[1])
    for c in range(2, k):
        second = torch.maximum(second, torch.minimum(first, p[c]))
        first = torch.maximum(first, p[c])
    return torch.stack([first, second])


def probability_measurements(probabilities: torch.Tensor) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
    """The argmax and per-label uncertainty of softmax probabilities ``(K, X, Y, Z)``, in Z chunks.

    Returns:
        ``(labels, uncertainty)``: the argmax ``(X, Y, Z)`` uint8/uint16 on the same grid, and per foreground
        label predicted somewhere: ``entropy`` (mean over its voxels of the softmax entropy divided by
        ln K, so 0 = certain, 1 = uniform), ``border_entropy`` (the same over its voxels that have a
        6-neighbour of another label: uncertainty at the predicted border), ``margin`` (mean top-1 minus
        top-2 probability), ``max_softmax`` (mean top-1 probability) and ``soft_dice`` (the Dice the
        probabilities expect of their own argmax, ``2 Σ_{argmax=c} p_c / (Σ p_c + |argmax=c|)``: 1 when
        certain, lower the more probability lies off the mask). Extra memory: one float32 grid (entropy).
    """
    from medseg.inference.sliding_window import class_argmax

    k = int(probabilities.shape[0])
    dtype = np.uint8 if k <= 256 else np.uint16
    labels = np.empty(tuple(probabilities.shape[1:]), dtype=dtype)
    entropy_grid = np.empty(tuple(probabilities.shape[1:]), dtype=np.float32)
    sums = torch.zeros((3, k), dtype=torch.float64)
    mass = torch.zeros(k, dtype=torch.float64)
    counts = torch.zeros(k, dtype=torch.float64)
    norm = math.log(k) if k > 1 else 1.0
    for z in _z_chunks(tuple(probabilities.shape)):
        p = probabilities[..., z].float()
        arg = class_argmax(p, dim=0).long()
        top = _top2(p)
        entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(dim=0) / norm
        margin = top[0] - top[1] if k > 1 else torch.ones_like(top[0])
        flat = arg.flatten()
        counts += torch.bincount(flat, minlength=k).double().cpu()
        mass += p.flatten(1).double().sum(dim=1).cpu()
        for row, values in enumerate((entropy, margin, top[0])):
            sums[row] += torch.bincount(flat, weights=values.flatten().double(), minlength=k).cpu()
        labels[..., z] = arg.cpu().numpy().astype(dtype)
        entropy_grid[..., z] = entropy.cpu().numpy()
    rim = inner_rim(labels)
    rim_labels = labels[rim].astype(np.int64)
    rim_counts = np.bincount(rim_labels, minlength=k)
    rim_sums = np.bincount(rim_labels, weights=entropy_grid[rim].astype(np.float64), minlength=k)
    uncertainty = {
        str(c): {
            "entropy": float(sums[0, c] / counts[c]),
            "border_entropy": float(rim_sums[c] / rim_counts[c]) if rim_counts[c] else 0.0,
            "margin": float(sums[1, c] / counts[c]),
            "max_softmax": float(sums[2, c] / counts[c]),
            "soft_dice": float(2 * sums[2, c] / (mass[c] + counts[c])),
        }
        for c in range(1, k)
        if counts[c] > 0
    }
    return labels, uncertainty


def prediction_measurements(image: torch.Tensor, probabilities: torch.Tensor, voxel_mm3: float) -> dict[str, Any]:
    """Everything the QC of a prediction measures on the network grid (see :func:`grid_measurements`).

    Args:
        image: ``(C, X, Y, Z)`` the pre-processed input.
        probabilities: ``(K, X, Y, Z)`` softmax probabilities on the same grid (fold average).
        voxel_mm3: voxel volume of that grid, mm³.

    Returns:
        :func:`grid_measurements` of the argmax, with ``uncertainty`` per label
        (:func:`probability_measurements`). The predictor adds ``agreement`` (``mirrors``, ``folds``: per
        label the Dice between the first pass's argmax and the others', see
        :class:`medseg.inference.sliding_window.PassAgreement`).
    """
    labels, uncertainty = probability_measurements(probabilities)
    measured = grid_measurements(np.asarray(image.detach().float().cpu().numpy()), labels, voxel_mm3)
    measured["uncertainty"] = uncertainty
    return measured


def input_description(meta: Mapping[str, Any], spacing: Any, shape: Any, orientation: str) -> dict[str, Any]:
    """The input's geometry as QC compares it: ``spacing`` (mm, sorted ascending, so it does not depend on the
    axis order), ``shape`` (voxels, sorted), ``orientation`` and DICOM ``modality`` (``""`` when not DICOM)."""
    return {
        "spacing": sorted(float(s) for s in spacing),
        "shape": sorted(int(s) for s in shape),
        "orientation": str(orientation),
        "modality": str(meta.get("modality") or ""),
    }
