"""Resampling of ``(C, X, Y, Z)`` tensors between voxel grids, on the tensor's device.

Two paths, chosen from the voxel-to-voxel map ``M = inv(in_affine) @ out_affine``:

* axis-aligned (``M`` diagonal: only spacing/origin change, possibly flips): separable
  1D interpolation per axis (gather + lerp), the fast path — and the only one with
  ``cubic`` (B-spline) and per-axis modes (nnU-Net's anisotropic rule);
* general (oblique, permuted axes): ``torch.nn.functional.grid_sample``.

Interpolation follows ITK/SimpleITK: a sample at continuous index ``p`` of an axis of
``n`` voxels is inside when ``-0.5 <= p <= n - 0.5``; inside, neighbours past the edge
are clamped (linear) or mirrored (cubic); outside, the result is ``fill``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Union

import numpy as np
import torch
import torch.nn.functional as F

from medseg.transforms.functional import bspline
from medseg.transforms.functional.convert import as_float

Mode = Literal["nearest", "linear", "cubic"]
Floats = Union[Sequence[float], np.ndarray]  # noqa: UP007  (runtime alias, py3.10)
MODES: tuple[str, ...] = ("nearest", "linear", "cubic")


def voxel_map(in_affine: np.ndarray, out_affine: np.ndarray) -> np.ndarray:
    """The 4×4 map from output voxel indices to input voxel indices."""
    return np.linalg.solve(np.asarray(in_affine, dtype=np.float64), np.asarray(out_affine, dtype=np.float64))


def is_axis_aligned(matrix: np.ndarray, tol: float = 1e-6) -> bool:
    """True when the 3×3 part of a voxel map is diagonal (axes map to the same axes)."""
    m = np.asarray(matrix)[:3, :3]
    off = m - np.diag(np.diag(m))
    return bool(np.abs(off).max() <= tol * max(1.0, float(np.abs(m).max())))


def _axis_coords(size: int, scale: float, offset: float) -> torch.Tensor:
    return torch.arange(size, dtype=torch.float64) * scale + offset


def resample_axis(
    x: torch.Tensor,
    dim: int,
    coords: torch.Tensor,
    mode: Mode,
    fill: float | None = None,
) -> torch.Tensor:
    """Sample ``x`` along ``dim`` at the 1D source positions ``coords`` (voxels, float64).

    Args:
        x: tensor; ``nearest`` keeps its dtype, ``linear``/``cubic`` need a floating tensor.
        dim: the axis to resample.
        coords: 1D source positions in voxel units along ``dim``.
        mode: ``"nearest"``, ``"linear"`` or ``"cubic"`` (B-spline, see :mod:`.bspline`).
        fill: value for positions outside ``[-0.5, n - 0.5]``; ``None`` extends the edge.

    Returns:
        ``x`` with axis ``dim`` of length ``len(coords)``.
    """
    n = x.shape[dim]
    dev = x.device
    if mode == "nearest":
        idx = torch.floor(coords + 0.5).clamp_(0, n - 1).long().to(dev)
        out = x.index_select(dim, idx)
    elif mode == "linear":
        c = coords.clamp(0, n - 1)
        i0 = torch.floor(c).clamp_(max=max(n - 2, 0)).long()
        i1 = (i0 + 1).clamp_(max=n - 1)
        shape = [1] * x.ndim
        shape[dim] = -1
        w = (c - i0).to(device=dev, dtype=x.dtype).reshape(shape)
        lo = x.index_select(dim, i0.to(dev))
        out = lo.lerp_(x.index_select(dim, i1.to(dev)), w)
    elif mode == "cubic":
        out = bspline.interpolate_axis(bspline.prefilter(x, dim), dim, coords)
    else:
        raise ValueError(f"unknown interpolation mode {mode!r}; expected one of {MODES}")
    if fill is not None:
        outside = ((coords < -0.5) | (coords > n - 0.5)).to(dev)
        if bool(outside.any()):
            sel = [slice(None)] * x.ndim
            sel[dim] = outside  # type: ignore[call-overload]
            out[tuple(sel)] = fill
    return out


def _centre_aligned(scale: Floats, offset: Floats) -> bool:
    """True when every axis maps output voxel ``i`` to input ``(i + 0.5) * scale - 0.5`` (scale > 0)."""
    return all(s > 0 and abs(o - (s - 1.0) / 2.0) < 1e-9 for s, o in zip(scale, offset))


def _upsample(x: torch.Tensor, size: list[int], scale: list[float], mode: Mode) -> torch.Tensor:
    """torch's native trilinear / nearest-exact kernels with explicit per-axis scales.

    The spatial axes are visited in memory order (a Fortran-ordered array is processed
    as its contiguous transpose and the result permuted back), so no transposing copy
    is made.
    """
    order = sorted(range(3), key=lambda k: -x.stride(k + 1))
    xp = x.permute(0, *(k + 1 for k in order))
    if not xp.is_contiguous():
        order, xp = [0, 1, 2], x
    factors = [1.0 / scale[k] for k in order]  # aten takes output/input factors
    sizes = [size[k] for k in order]
    if mode == "linear":
        out = torch.ops.aten.upsample_trilinear3d.default(xp[None], sizes, False, *factors)[0]
    else:
        out = torch.ops.aten._upsample_nearest_exact3d.default(xp[None], sizes, *factors)[0]
    back = [order.index(k) for k in range(3)]
    return out.permute(0, *(k + 1 for k in back))


def resample_separable(
    x: torch.Tensor,
    out_shape: Sequence[int],
    scale: Floats,
    offset: Floats,
    modes: Sequence[Mode],
    fill: float | None = None,
) -> torch.Tensor:
    """Resample the spatial axes of ``x`` ``(C, X, Y, Z)`` independently.

    Output voxel ``i`` of spatial axis ``k`` samples the input at ``i * scale[k] + offset[k]``.
    When the grids are centre-aligned (``offset = (scale - 1) / 2``, the ``resample``
    convention and its inverse) and no ``fill`` is needed, linear and nearest axes use
    torch's native ``upsample_trilinear3d`` / ``_upsample_nearest_exact3d`` kernels (one
    pass each, multi-threaded, CPU and CUDA). Otherwise each axis is a 1D pass, axes
    that shrink first so later passes touch fewer voxels; identity axes are skipped.

    Args:
        x: ``(C, X, Y, Z)``; floating for non-nearest modes.
        out_shape: ``(X', Y', Z')``.
        scale: per-axis input voxels per output voxel.
        offset: per-axis input position of output voxel 0.
        modes: per-axis interpolation mode.
        fill: value outside the input (``None``: edge values).

    Returns:
        ``(C, X', Y', Z')`` on ``x``'s device.
    """
    out_shape = [int(s) for s in out_shape]
    kernels_fit = x.is_floating_point() or (x.dtype == torch.uint8 and all(m == "nearest" for m in modes))
    # torch's kernels ignore the given scale along an axis whose size does not change: use them only
    # where every such axis really is the identity
    same_size_ok = all(out_shape[k] != x.shape[k + 1] or abs(scale[k] - 1.0) < 1e-12 for k in range(3))
    if fill is None and kernels_fit and "cubic" not in modes and same_size_ok and _centre_aligned(scale, offset):
        for mode in ("linear", "nearest"):
            axes = [k for k in range(3) if modes[k] == mode]
            if axes:
                size = [out_shape[k] if k in axes else x.shape[k + 1] for k in range(3)]
                x = _upsample(x, size, [float(scale[k]) if k in axes else 1.0 for k in range(3)], mode)
        return x
    order = sorted(range(3), key=lambda k: out_shape[k] / x.shape[k + 1])
    for k in order:
        n = x.shape[k + 1]
        if out_shape[k] == n and abs(scale[k] - 1.0) < 1e-12 and abs(offset[k]) < 1e-9:
            continue
        x = resample_axis(x, k + 1, _axis_coords(int(out_shape[k]), float(scale[k]), float(offset[k])), modes[k], fill)
    return x


def resample_grid(
    x: torch.Tensor,
    matrix: np.ndarray,
    out_shape: Sequence[int],
    mode: Literal["nearest", "linear"],
    fill: float | None = None,
) -> torch.Tensor:
    """Resample ``x`` ``(C, X, Y, Z)`` through any affine voxel map with ``grid_sample``.

    Args:
        x: ``(C, X, Y, Z)`` floating tensor.
        matrix: 4×4 map from output voxel indices to input voxel indices.
        out_shape: ``(X', Y', Z')``.
        mode: ``"nearest"`` or ``"linear"``.
        fill: value outside the input (``None``: edge values).

    Returns:
        ``(C, X', Y', Z')`` on ``x``'s device, dtype of ``x``.
    """
    dev = x.device
    n_in = torch.tensor(x.shape[1:], dtype=torch.float64)
    m = torch.as_tensor(np.asarray(matrix), dtype=torch.float64)
    # grid_sample's last axis lists (W, H, D) = (Z, Y, X); normalise with align_corners=False
    scale = 2.0 / n_in
    lin = (m[:3, :3] * scale[:, None]).flip(0).to(device=dev, dtype=x.dtype)
    const = ((m[:3, 3] + 0.5) * scale - 1.0).flip(0).to(device=dev, dtype=x.dtype)
    axes = [torch.arange(int(s), device=dev, dtype=x.dtype) for s in out_shape]
    grid = (
        axes[0][:, None, None, None] * lin[:, 0]
        + axes[1][None, :, None, None] * lin[:, 1]
        + (axes[2][None, None, :, None] * lin[:, 2] + const)
    )
    out = F.grid_sample(
        x[None],
        grid[None],
        mode="bilinear" if mode == "linear" else "nearest",
        padding_mode="border",
        align_corners=False,
    )[0]
    if fill is not None:
        limit = 1.0 + scale.flip(0).to(device=dev, dtype=x.dtype) * 1e-6
        outside = (grid.abs() > limit).any(dim=-1)
        out[:, outside] = fill
    return out


def resample_to_grid(
    x: torch.Tensor,
    in_affine: np.ndarray,
    out_shape: Sequence[int],
    out_affine: np.ndarray,
    mode: Mode | Sequence[Mode],
    fill: float | None = None,
) -> torch.Tensor:
    """Resample ``x`` ``(C, X, Y, Z)`` on ``in_affine`` onto the grid ``(out_shape, out_affine)``.

    Args:
        x: ``(C, X, Y, Z)``. ``nearest`` keeps integer dtypes; other modes compute in float32
            (float64 input stays float64).
        in_affine: 4×4 voxel→world (mm) of ``x``.
        out_shape: ``(X', Y', Z')``.
        out_affine: 4×4 voxel→world (mm) of the output.
        mode: one mode, or one per output axis (axis-aligned maps only).
        fill: value where the output lies outside the input (``None``: edge values).

    Returns:
        ``(C, X', Y', Z')`` on ``x``'s device.

    Raises:
        ValueError: ``cubic`` or per-axis modes with a non-axis-aligned map.
    """
    modes: tuple[Mode, ...] = (mode,) * 3 if isinstance(mode, str) else tuple(mode)  # type: ignore[assignment]
    if any(m != "nearest" for m in modes):
        x = as_float(x)
    matrix = voxel_map(in_affine, out_affine)
    if is_axis_aligned(matrix):
        return resample_separable(x, out_shape, np.diag(matrix)[:3], matrix[:3, 3], modes, fill)
    if len(set(modes)) != 1 or modes[0] == "cubic":
        raise ValueError(
            f"mode {modes} needs axis-aligned grids; for an oblique or permuted target use 'linear' or 'nearest'"
        )
    dtype = x.dtype
    xf = as_float(x) if x.is_floating_point() else x.to(torch.float32)
    out = resample_grid(xf, matrix, out_shape, modes[0], fill)  # type: ignore[arg-type]
    return out if out.dtype == dtype else out.round_().to(dtype)


def resample_labels_linear(
    labels: torch.Tensor,
    resample: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Resample a label map by interpolating each class's one-hot mask and taking the argmax.

    Smoother than nearest neighbour (no staircase from anisotropic voxels). Memory stays at
    three output-sized buffers whatever the number of classes.

    Args:
        labels: ``(1, X, Y, Z)`` integer label map.
        resample: maps a float ``(1, X, Y, Z)`` mask to the output grid (linear).

    Returns:
        ``(1, X', Y', Z')`` label map of ``labels``' dtype.
    """
    classes = torch.unique(labels).tolist()
    best = best_label = None
    for c in classes:
        score = resample((labels == c).to(torch.float32))
        if best is None or best_label is None:
            best = score
            best_label = torch.full_like(score, c, dtype=labels.dtype)
        else:
            better = score > best
            best = torch.where(better, score, best)
            best_label[better] = c
    if best_label is None:
        raise ValueError("label map is empty")
    return best_label
