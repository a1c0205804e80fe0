"""Turning label arrays or Volumes into binary masks plus the voxel spacing in mm."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medseg.core.volume import Volume
from medseg.errors import GeometryError, InputError

MaskLike = np.ndarray | torch.Tensor | Volume


def as_labels(x: MaskLike, what: str = "mask") -> np.ndarray:
    """``x`` as a numpy label array ``(X, Y, Z)`` (or ``(X, Y)``); ``(1, X, Y, Z)`` is squeezed.

    Raises:
        InputError: a multi-channel array or Volume.
    """
    arr = (
        x.numpy()
        if isinstance(x, Volume)
        else x.detach().cpu().numpy()
        if isinstance(x, torch.Tensor)
        else np.asarray(x)
    )
    if isinstance(x, Volume) or arr.ndim == 4:
        if arr.shape[0] != 1:
            raise InputError(f"{what}: expected one channel (1, X, Y, Z) of labels, got shape {arr.shape}")
        arr = arr[0]
    return arr


def binary(x: np.ndarray, label: int | None) -> np.ndarray:
    """``x == label``, or ``x > 0`` (all foreground) when ``label`` is None; bool arrays pass through."""
    if x.dtype == bool:
        return x
    return x > 0 if label is None else x == label


def pair(
    prediction: MaskLike, reference: MaskLike, spacing: Sequence[float] | float | None
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Label arrays of prediction and reference plus spacing (mm).

    The spacing comes from ``spacing``, else from a Volume argument, else 1 mm. Two
    Volumes must lie on the same grid.

    Raises:
        GeometryError: shapes differ, or two Volumes lie on different grids.
    """
    p, r = as_labels(prediction, "prediction"), as_labels(reference, "reference")
    if p.shape != r.shape:
        raise GeometryError(f"prediction shape {p.shape} differs from reference shape {r.shape}; resample first")
    if isinstance(prediction, Volume) and isinstance(reference, Volume):
        reference.require_grid(prediction, "prediction")
    if spacing is None:
        vol = prediction if isinstance(prediction, Volume) else reference if isinstance(reference, Volume) else None
        sp: tuple[float, ...] = vol.spacing if vol is not None else (1.0,) * p.ndim
    elif isinstance(spacing, (int, float)):
        sp = (float(spacing),) * p.ndim
    else:
        sp = tuple(float(s) for s in spacing)
    if len(sp) != p.ndim:
        raise InputError(f"spacing {sp} has {len(sp)} values for {p.ndim}D masks of shape {p.shape}")
    return p, r, sp[: p.ndim]
