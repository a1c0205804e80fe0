"""Shared checks of post-processing steps: a label Volume in, a label Volume on the same grid out."""

from __future__ import annotations

import numpy as np

from medseg.core.volume import HistoryEntry, Volume
from medseg.errors import ConfigError, InputError

#: Connectivities accepted by the connected-component steps (face, edge, corner neighbours).
CONNECTIVITIES = (6, 18, 26)


def label_array(volume: Volume, step: str) -> np.ndarray:
    """The ``(X, Y, Z)`` integer array of a ``(1, X, Y, Z)`` label Volume.

    Raises:
        InputError: ``volume`` is not of kind ``"label"``, has several channels or a
            non-integer dtype.
    """
    src = volume.meta.get("source") or "volume"
    if volume.kind != "label":
        raise InputError(
            f"{step}: {src} is of kind {volume.kind!r}; post-processing steps take label maps "
            "(kind 'label'); take the argmax of probabilities first"
        )
    arr = volume.numpy()
    if arr.shape[0] != 1:
        raise InputError(f"{step}: {src} has {arr.shape[0]} channels; expected one channel of labels (1, X, Y, Z)")
    if arr.dtype.kind not in "iub":
        raise InputError(f"{step}: {src} has dtype {arr.dtype}; labels must be integers")
    return arr[0]


def with_labels(volume: Volume, labels: np.ndarray, entry: HistoryEntry) -> Volume:
    """A copy of ``volume`` holding ``labels`` ``(X, Y, Z)``, same grid, ``entry`` appended."""
    return volume.with_step(labels[None], None, entry)


def check_connectivity(connectivity: int) -> int:
    """``connectivity`` if it is 6, 18 or 26.

    Raises:
        ConfigError: any other value.
    """
    if connectivity not in CONNECTIVITIES:
        raise ConfigError(f"connectivity must be one of {CONNECTIVITIES} (face/edge/corner), got {connectivity!r}")
    return int(connectivity)


def foreground_box(labels: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box (slices) of the non-zero voxels, or None when there are none."""
    axes = []
    for ax in range(labels.ndim):
        other = tuple(i for i in range(labels.ndim) if i != ax)
        hit = np.flatnonzero(labels.any(axis=other))
        if hit.size == 0:
            return None
        axes.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(axes)
