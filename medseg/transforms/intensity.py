"""Intensity steps: ``clip``, ``scale_intensity``, ``zscore``, ``percentile_clip``.

They act on ``kind == "intensity"`` volumes only: label and probability volumes pass
through unchanged and nothing is added to their history (so the same pipeline can be
applied to an image and its label map). On images they append a history entry with
their options (provenance; the inverse is the identity). Output is float32. NaN or
infinite voxels are refused with :class:`~medseg.errors.InputError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from medseg.core.steps import Step, register_step
from medseg.core.volume import Volume
from medseg.errors import ConfigError, InputError
from medseg.transforms.functional import intensity as F
from medseg.transforms.functional.convert import as_tensor


def _finite_tensor(volume: Volume, step: str) -> torch.Tensor:
    x = as_tensor(volume.array)
    if not F.all_finite(x):
        raise InputError(
            f"{volume.meta.get('source') or 'volume'}: {step} got NaN or infinite voxels; "
            "fix or mask them before intensity normalisation"
        )
    return x


def _check_window(step: str, low: float | None, high: float | None) -> None:
    for name, v in (("low", low), ("high", high)):
        if v is not None and not math.isfinite(float(v)):
            raise ConfigError(f"{step}: {name} must be a finite number, got {v!r}")
    if low is not None and high is not None and float(low) >= float(high):
        raise ConfigError(f"{step}: low ({low}) must be below high ({high})")


@register_step("clip")
@dataclass(frozen=True)
class Clip(Step):
    """Clip intensities to ``[low, high]`` (e.g. a HU window); either bound may be None.

    Attributes:
        low: lower bound (HU for CT); None leaves it open.
        high: upper bound; None leaves it open.
    """

    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.low is None and self.high is None:
            raise ConfigError("clip: give 'low' and/or 'high'")
        _check_window("clip", self.low, self.high)

    def __call__(self, volume: Volume) -> Volume:
        if volume.kind != "intensity":
            return volume
        x = F.clip(_finite_tensor(volume, self.name), self.low, self.high)
        return volume.with_step(x, None, self.entry(**self.options()))


@register_step("scale_intensity")
@dataclass(frozen=True)
class ScaleIntensity(Step):
    """Map the window ``[low, high]`` to ``[out_low, out_high]`` (default [0, 1]), clipping outside.

    Attributes:
        low: window start (e.g. -1000 HU).
        high: window end (e.g. 1000 HU).
        out_low: value at ``low``.
        out_high: value at ``high``.
        clip: clip the result to ``[out_low, out_high]``.
    """

    low: float
    high: float
    out_low: float = 0.0
    out_high: float = 1.0
    clip: bool = True

    def __post_init__(self) -> None:
        _check_window("scale_intensity", self.low, self.high)

    def __call__(self, volume: Volume) -> Volume:
        if volume.kind != "intensity":
            return volume
        x = F.scale_intensity(
            _finite_tensor(volume, self.name), self.low, self.high, self.out_low, self.out_high, self.clip
        )
        return volume.with_step(x, None, self.entry(**self.options()))


@register_step("zscore")
@dataclass(frozen=True)
class ZScore(Step):
    """Per channel ``(x - mean) / std`` with statistics over the image, its nonzero voxels or a mask.

    With ``over="nonzero"`` only nonzero voxels are normalised and zeros stay 0 (skull-
    stripped MR); with ``over="mask"`` the statistics come from ``mask`` (a label
    volume on the same grid) and every voxel is normalised.

    Attributes:
        over: ``"image"``, ``"nonzero"`` or ``"mask"``.
        mask: a Volume on the image's grid (nonzero = inside), for ``over="mask"``.
    """

    over: Literal["image", "nonzero", "mask"] = "image"
    mask: Volume | None = None

    def __post_init__(self) -> None:
        if self.over not in ("image", "nonzero", "mask"):
            raise ConfigError(f"zscore: over must be 'image', 'nonzero' or 'mask', got {self.over!r}")
        if (self.over == "mask") != (self.mask is not None):
            raise ConfigError("zscore: give a 'mask' Volume exactly when over='mask'")

    def options(self) -> dict:
        return {"over": self.over}

    def __call__(self, volume: Volume) -> Volume:
        if volume.kind != "intensity":
            return volume
        x = _finite_tensor(volume, self.name)
        if self.over == "nonzero":
            nonzero = x != 0
            out = torch.where(nonzero, F.zscore(x, nonzero), torch.zeros((), dtype=torch.float32, device=x.device))
        elif self.mask is not None:  # over == "mask" (checked in __post_init__)
            volume.require_grid(self.mask, "zscore mask")
            m = as_tensor(self.mask.array).to(x.device) != 0
            out = F.zscore(x, m[0] if m.shape[0] == 1 else m)
        else:
            out = F.zscore(x)
        return volume.with_step(out, None, self.entry(**self.options()))


@register_step("percentile_clip")
@dataclass(frozen=True)
class PercentileClip(Step):
    """nnU-Net's CT normalisation: clip to dataset foreground percentiles, then z-score with dataset statistics.

    ``low``/``high`` are the 0.5 / 99.5 percentiles (HU) of foreground voxels over the
    training set, ``mean``/``std`` their mean and standard deviation; compute them with
    :func:`medseg.transforms.functional.intensity.foreground_statistics`.

    Attributes:
        low: lower clip (HU).
        high: upper clip (HU).
        mean: dataset foreground mean (HU).
        std: dataset foreground standard deviation (HU, > 0).
    """

    low: float
    high: float
    mean: float
    std: float

    def __post_init__(self) -> None:
        _check_window("percentile_clip", self.low, self.high)
        if not (math.isfinite(float(self.std)) and float(self.std) > 0):
            raise ConfigError(f"percentile_clip: std must be > 0, got {self.std}")

    def __call__(self, volume: Volume) -> Volume:
        if volume.kind != "intensity":
            return volume
        x = F.percentile_clip_zscore(_finite_tensor(volume, self.name), self.low, self.high, self.mean, self.std)
        return volume.with_step(x, None, self.entry(**self.options()))
