"""Cubic B-spline interpolation along one axis (prefilter + 4-tap kernel), in torch.

Matches ``scipy.ndimage.map_coordinates(order=3, mode="mirror")``: the samples are
turned into B-spline coefficients by Unser's recursive filter with mirror boundaries,
then evaluated with the cubic B-spline kernel; indices past the ends are mirrored.
"""

from __future__ import annotations

import math

import torch

_POLE = math.sqrt(3.0) - 2.0


def prefilter(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Cubic B-spline coefficients of ``x`` along ``dim`` (mirror boundary), float32 or float64.

    Args:
        x: any floating tensor; ``dim`` is the axis to filter.
        dim: the axis.

    Returns:
        A tensor of the same shape whose cubic B-spline interpolates ``x`` exactly at the samples.
    """
    n = x.shape[dim]
    if n == 1:
        return x.clone()
    z = _POLE
    c = x.movedim(dim, 0).contiguous().clone()
    # causal initialisation, exact for the mirror-symmetric extension of period 2n - 2
    k = torch.arange(n, dtype=torch.float64)
    w = z**k
    if n > 2:
        w[1 : n - 1] += z ** (2 * n - 2 - k[1 : n - 1])
    w = (w / (1.0 - z ** (2 * n - 2))).to(device=c.device, dtype=c.dtype)
    first = torch.tensordot(w, c, dims=([0], [0]))
    c[0] = first
    for i in range(1, n):
        c[i].add_(c[i - 1], alpha=z)
    # anti-causal pass
    c[n - 1] = (z / (z * z - 1.0)) * (c[n - 1] + z * c[n - 2])
    for i in range(n - 2, -1, -1):
        c[i] = z * (c[i + 1] - c[i])
    c.mul_(6.0)
    return c.movedim(0, dim)


def _mirror(idx: torch.Tensor, n: int) -> torch.Tensor:
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * n - 2
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - idx, idx)


def _kernel(t: torch.Tensor) -> torch.Tensor:
    """Cubic B-spline β³(t) for |t| < 2."""
    a = t.abs()
    return torch.where(a < 1.0, 2.0 / 3.0 - a * a + a**3 / 2.0, torch.clamp(2.0 - a, min=0.0) ** 3 / 6.0)


def interpolate_axis(coeffs: torch.Tensor, dim: int, coords: torch.Tensor) -> torch.Tensor:
    """Evaluate the B-spline with ``coeffs`` (from :func:`prefilter`) at ``coords`` along ``dim``.

    Args:
        coeffs: coefficients, any shape.
        dim: the axis.
        coords: 1D float64 source positions in voxels along ``dim``.

    Returns:
        ``coeffs`` with ``dim`` replaced by ``len(coords)`` samples.
    """
    n = coeffs.shape[dim]
    base = torch.floor(coords)
    shape = [1] * coeffs.ndim
    shape[dim] = -1

    def tap(offset: int) -> torch.Tensor:
        idx = base + offset
        weight = _kernel(coords - idx).to(device=coeffs.device, dtype=coeffs.dtype).reshape(shape)
        return coeffs.index_select(dim, _mirror(idx.long(), n).to(coeffs.device)) * weight

    out = tap(-1)
    for offset in (0, 1, 2):
        out.add_(tap(offset))
    return out
