"""Window placement and blending weights for sliding-window inference.

Placement follows MONAI's ``sliding_window_inference`` exactly (same starts, the last
window flush with the far edge), so results can be compared voxel for voxel.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch

from medseg.errors import ConfigError

Blend = Literal["gaussian", "constant"]

#: σ of the Gaussian importance map as a fraction of the patch size.
SIGMA_SCALE = 0.125


def scan_interval(size: int, patch: int, overlap: float) -> int:
    """Step in voxels between window starts along one axis (``patch`` when it spans the axis)."""
    if patch == size:
        return patch
    return max(int(patch * (1.0 - overlap)), 1)


def axis_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis of ``size`` voxels (``size >= patch``).

    Windows step by ``int(patch * (1 - overlap))``; the last one is moved back so it ends
    at the edge of the volume.
    """
    step = scan_interval(size, patch, overlap)
    count = next((d for d in range(math.ceil(size / step)) if d * step + patch >= size), 0) + 1
    return [min(i * step, size - patch) for i in range(count)]


def window_starts(spatial_shape: Sequence[int], patch_size: Sequence[int], overlap: float) -> list[tuple[int, ...]]:
    """Start corner of every window over a (padded) grid, in C order of the axes."""
    per_axis = [axis_starts(s, p, overlap) for s, p in zip(spatial_shape, patch_size)]
    return list(itertools.product(*per_axis))


def importance_map(
    patch_size: Sequence[int],
    blend: Blend = "gaussian",
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Blending weights of one window, shape ``patch_size``.

    ``"gaussian"``: product of 1D Gaussians centred on the window with σ = patch/8,
    peak 1, values below 1e-3 raised to 1e-3 (so every voxel gets some weight);
    ``"constant"``: ones.

    Raises:
        ConfigError: ``blend`` is neither ``"gaussian"`` nor ``"constant"``.
    """
    dev = torch.device(device)
    if blend == "constant":
        return torch.ones(tuple(patch_size), device=dev, dtype=dtype)
    if blend != "gaussian":
        raise ConfigError(f"blend must be 'gaussian' or 'constant', got {blend!r}")
    weights = torch.ones((), dtype=torch.float32, device=dev)
    for i, p in enumerate(patch_size):
        x = torch.arange(-(p - 1) / 2.0, (p - 1) / 2.0 + 1, dtype=torch.float32, device=dev)
        g = torch.exp(x**2 / (-2 * (p * SIGMA_SCALE) ** 2))
        weights = weights.unsqueeze(-1) * g[(None,) * i] if i else g
    floor = max(float(weights.min()), 1e-3)
    return weights.clamp_(min=floor).to(dtype)
