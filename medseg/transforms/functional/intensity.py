"""Intensity functions on ``(C, X, Y, Z)`` tensors (float32 out, per channel where it matters)."""

from __future__ import annotations

import numpy as np
import torch

from medseg.transforms.functional.convert import as_float


def _float_copy(x: torch.Tensor) -> torch.Tensor:
    """A float tensor that may be modified in place (a copy, or the conversion of an integer tensor)."""
    return x.to(torch.float32) if not x.is_floating_point() else x.clone()


def all_finite(x: torch.Tensor) -> bool:
    """True when ``x`` has no NaN or infinite value (one reduction; a full check only if the sum overflows)."""
    if not x.is_floating_point():
        return True
    if bool(torch.isfinite(x.sum())):
        return True  # a NaN or an infinity would have made the sum non-finite
    return bool(torch.isfinite(x).all())


def clip(x: torch.Tensor, low: float | None, high: float | None) -> torch.Tensor:
    """``x`` limited to ``[low, high]`` (either may be None), as float."""
    return _float_copy(x).clamp_(min=low, max=high)


def scale_intensity(
    x: torch.Tensor, low: float, high: float, out_low: float = 0.0, out_high: float = 1.0, clip: bool = True
) -> torch.Tensor:
    """Map the window ``[low, high]`` linearly to ``[out_low, out_high]`` (clipped when ``clip``)."""
    scale = (out_high - out_low) / (high - low)
    # one new tensor, then in place: x * scale + (out_low - low * scale)
    y = x.mul(scale) if x.is_floating_point() else x.to(torch.float32).mul_(scale)
    y = y.add_(out_low - low * scale)
    if clip:
        y = y.clamp_(min(out_low, out_high), max(out_low, out_high))
    return y


def zscore(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Per channel ``(x - mean) / std`` with statistics over ``mask`` (``(X, Y, Z)`` or ``(C, X, Y, Z)`` bool).

    The standard deviation is the population one (``ddof = 0``, as numpy); channels with
    (near) zero spread are only centred. Voxels outside ``mask`` are normalised too.
    """
    xf = as_float(x)
    out = torch.empty_like(xf)
    for c in range(xf.shape[0]):
        values = xf[c] if mask is None else xf[c][mask if mask.ndim == 3 else mask[c]]
        if values.numel() == 0:
            out[c] = xf[c]
            continue
        v = values.double()
        mean = v.mean()
        std = v.std(correction=0)
        out[c] = (xf[c] - mean.to(xf.dtype)) / (std if std > eps else torch.ones_like(std)).to(xf.dtype)
    return out


def percentile_clip_zscore(x: torch.Tensor, low: float, high: float, mean: float, std: float) -> torch.Tensor:
    """nnU-Net's CT normalisation: clip to ``[low, high]`` then ``(x - mean) / std`` (dataset values)."""
    return _float_copy(x).clamp_(min=low, max=high).sub_(mean).div_(std)


def foreground_statistics(values: torch.Tensor, low_percentile: float = 0.5, high_percentile: float = 99.5) -> dict:
    """Dataset statistics for :func:`percentile_clip_zscore` from pooled foreground ``values``.

    Args:
        values: 1D tensor of intensities inside the foreground of all training cases (HU).
        low_percentile: lower clip percentile (nnU-Net: 0.5).
        high_percentile: upper clip percentile (nnU-Net: 99.5).

    Returns:
        ``{"low", "high", "mean", "std"}`` as floats (mean/std of the values, as nnU-Net).
    """
    v = values.detach().flatten().cpu().double().numpy()  # torch.quantile is limited to 2**24 values
    low, high = np.percentile(v, [low_percentile, high_percentile])
    return {"low": float(low), "high": float(high), "mean": float(v.mean()), "std": float(v.std())}
