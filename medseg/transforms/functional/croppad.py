"""Crop and pad channel-first tensors ``(C, X, Y, Z)`` by voxel boxes (no geometry here)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

Box = tuple[tuple[int, int], ...]


def crop(x: torch.Tensor, box: Sequence[Sequence[int]]) -> torch.Tensor:
    """The sub-block ``box = ((x0, x1), (y0, y1), (z0, z1))`` (half-open, inside the array) of ``x``.

    Args:
        x: ``(C, X, Y, Z)``.
        box: one ``(start, stop)`` pair per spatial axis, ``0 <= start < stop <= size``.

    Returns:
        A view ``(C, x1 - x0, y1 - y0, z1 - z0)``.
    """
    return x[(slice(None), *(slice(int(a), int(b)) for a, b in box))]


def pad(
    x: torch.Tensor,
    before: Sequence[int],
    after: Sequence[int],
    value: float | Sequence[float] = 0.0,
) -> torch.Tensor:
    """Pad the spatial axes of ``x`` (``(C, X, Y, Z)``) with constants.

    Args:
        x: ``(C, X, Y, Z)``.
        before: voxels added before each spatial axis (``>= 0``).
        after: voxels added after each spatial axis (``>= 0``).
        value: one fill value, or one per channel (e.g. background probability 1).

    Returns:
        ``(C, X + bx + ax, Y + by + ay, Z + bz + az)``, same dtype and device.
    """
    if not any(before) and not any(after):
        return x
    shape = [x.shape[0]] + [int(s) + int(b) + int(a) for s, b, a in zip(x.shape[1:], before, after)]
    if isinstance(value, (int, float)):
        if len(before) == 3:
            flat = [int(v) for pair in zip(reversed(list(before)), reversed(list(after))) for v in pair]
            return F.pad(x, flat, mode="constant", value=value)
        out = x.new_full(shape, value)
    else:
        out = torch.empty(shape, dtype=x.dtype, device=x.device)
        for c, v in enumerate(value):
            out[c] = v
    inner = (slice(None), *(slice(int(b), int(b) + int(s)) for b, s in zip(before, x.shape[1:])))
    out[inner] = x
    return out


def crop_or_pad(
    x: torch.Tensor,
    start: Sequence[int],
    size: Sequence[int],
    value: float = 0.0,
) -> torch.Tensor:
    """The block of ``size`` voxels starting at ``start``; parts outside ``x`` are filled with ``value``.

    Args:
        x: ``(C, X, Y, Z)``.
        start: first voxel of the block per spatial axis (may be negative).
        size: block size per spatial axis.
        value: fill for voxels outside ``x``.

    Returns:
        ``(C, *size)`` on ``x``'s device (a view when the block lies inside ``x``).
    """
    shape = x.shape[1:]
    lo = [max(int(s), 0) for s in start]
    hi = [min(int(s) + int(n), int(d)) for s, n, d in zip(start, size, shape)]
    inside = all(a == s for a, s in zip(lo, start)) and all(b == int(s) + int(n) for b, s, n in zip(hi, start, size))
    if inside:
        return crop(x, list(zip(lo, hi)))
    out = x.new_full((x.shape[0], *(int(n) for n in size)), value)
    if all(b > a for a, b in zip(lo, hi)):
        dst = (slice(None), *(slice(a - int(s), b - int(s)) for a, b, s in zip(lo, hi, start)))
        out[dst] = crop(x, list(zip(lo, hi)))
    return out
