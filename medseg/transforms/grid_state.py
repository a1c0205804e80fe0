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


def restrict_world(
    entry: HistoryEntry,
    box: tuple[tuple[int, int], ...],
    out_shape: Sequence[int],
    out_affine: np.ndarray,
    stencil: int,
) -> tuple[HistoryEntry, tuple[tuple[int, int], ...]]:
    """:meth:`medseg.core.steps.Step.restrict` of a step whose inverse maps every input voxel by world
    position, reading output voxels within ``stencil`` voxels of where it lands (0: exact index maps such
    as reorient; 1: linear interpolation).

    The entry for the part has the part's shape and shifted affine; the output box covers every voxel the
    inverse reads for the part (clipped to the output grid, whose edges the inverse extends as before), so
    inverting the part gives exactly the values a whole-grid inversion gives there.
    """
    _, affine = input_grid(entry)
    start = np.array([b[0] for b in box], dtype=np.float64)
    stop = np.array([b[1] for b in box], dtype=np.float64)
    shift = np.eye(4)
    shift[:3, 3] = start
    corners = np.array([[x, y, z, 1.0] for x in (start[0], stop[0] - 1) for y in (start[1], stop[1] - 1)
                        for z in (start[2], stop[2] - 1)])  # fmt: skip
    landed = (np.linalg.solve(np.asarray(out_affine, dtype=np.float64), affine) @ corners.T)[:3]
    low = np.floor(landed.min(axis=1) + 1e-6).astype(int) - stencil
    high = np.ceil(landed.max(axis=1) - 1e-6).astype(int) + stencil + 1
    out_box = tuple((max(0, int(lo)), min(int(n), int(hi))) for lo, hi, n in zip(low, high, out_shape))
    state = {
        **entry.state,
        "in_shape": [int(b - a) for a, b in box],
        "in_affine": (affine @ shift).tolist(),
        "out_shape": [b - a for a, b in out_box],
    }
    return HistoryEntry(entry.step, state), out_box


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
