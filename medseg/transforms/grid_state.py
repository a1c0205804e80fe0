"""What spatial steps record in history, and how their inverses map a prediction back.

Every spatial step stores ``in_shape``, ``in_affine`` (nested lists, JSON-able) and
``out_shape`` (checked by :func:`medseg.core.steps.invert`), plus its own values.
Inverses interpolate by the prediction's kind: labels nearest, probabilities and
logits linear (the caller takes the argmax afterwards).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medseg.core.volume import HistoryEntry, Volume
from medseg.errors import GeometryError
from medseg.transforms.functional.convert import as_tensor
from medseg.transforms.functional.resample import Mode, resample_to_grid


def grid_state(volume: Volume, out_shape: Sequence[int], **extra: Any) -> dict[str, Any]:
    """History state of a spatial step applied to ``volume``, producing ``out_shape``."""
    return {
        "in_shape": [int(s) for s in volume.spatial_shape],
        "in_affine": np.asarray(volume.affine).tolist(),
        "out_shape": [int(s) for s in out_shape],
        **extra,
    }


def input_grid(entry: HistoryEntry) -> tuple[tuple[int, int, int], np.ndarray]:
    """``(shape, affine)`` of the grid before the step recorded in ``entry``.

    Raises:
        GeometryError: the entry lacks ``in_shape``/``in_affine`` (not from a spatial step).
    """
    try:
        shape = tuple(int(s) for s in entry.state["in_shape"])
        affine = np.asarray(entry.state["in_affine"], dtype=np.float64)
    except KeyError as exc:
        raise GeometryError(
            f"history entry '{entry.step}' has no {exc.args[0]!r}; it was not recorded by a medseg spatial step "
            "and cannot be inverted"
        ) from exc
    if len(shape) != 3 or affine.shape != (4, 4):
        raise GeometryError(f"history entry '{entry.step}' has a malformed grid: shape {shape}, affine {affine.shape}")
    return shape, affine  # type: ignore[return-value]


def inverse_mode(kind: str) -> Mode:
    """Interpolation used to bring a prediction of ``kind`` back: labels nearest, else linear."""
    return "nearest" if kind == "label" else "linear"


def background_fill(volume: Volume) -> list[float] | float:
    """Fill for voxels a prediction does not cover: background probability 1 for probabilities, else 0."""
    if volume.kind == "probability":
        return [1.0] + [0.0] * (volume.n_channels - 1)
    return 0.0


def resample_back(volume: Volume, entry: HistoryEntry, *, outside_fill: bool = False) -> Volume:
    """Resample ``volume`` (on the step's output grid) onto the step's input grid.

    Args:
        volume: the prediction on the step's output grid.
        entry: the step's history entry.
        outside_fill: fill input voxels the output grid does not cover with background
            (see :func:`background_fill`) instead of extending edge values.

    Returns:
        A Volume on exactly the input grid (shape and affine from ``entry``).
    """
    shape, affine = input_grid(entry)
    x = as_tensor(volume.array)
    mode = inverse_mode(volume.kind)
    if not outside_fill:
        out = resample_to_grid(x, volume.affine, shape, affine, mode, fill=None)
    elif volume.kind == "probability":
        out = resample_to_grid(x, volume.affine, shape, affine, mode, fill=float("nan"))
        holes = torch.isnan(out[0])
        if bool(holes.any()):
            out[0][holes] = 1.0
            out[1:, holes] = 0.0
    else:
        out = resample_to_grid(x, volume.affine, shape, affine, mode, fill=0.0)
    return volume.replace(array=out, affine=affine)
