"""``scale_percentiles``: map each image's own intensity percentiles to a fixed range.

MR intensities have no physical unit, so a pipeline cannot name a window in advance as it does
for CT (``scale_intensity``); this step measures the window on every image. It is MONAI's
``ScaleIntensityRangePercentiles`` and the first half of deepbet's normalisation (0.5 / 99.5
percentiles to [0, 1], clipped). Like the other intensity steps it acts on ``intensity``
volumes only and records its options and the measured window in the history (provenance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from medseg.core.steps import Step, register_step
from medseg.core.volume import Volume
from medseg.errors import ConfigError, InputError
from medseg.transforms.functional import intensity as F
from medseg.transforms.functional.convert import as_tensor


def percentiles(x: torch.Tensor, lower: float, upper: float) -> tuple[float, float]:
    """The ``lower``/``upper`` percentiles (0–100, linear interpolation as numpy) of all values of ``x``.

    numpy rather than ``torch.quantile``, which refuses more than 2**24 values (a 256³ volume).
    """
    values = x.detach().reshape(-1).cpu().numpy()
    low, high = np.percentile(values, [lower, upper])
    return float(low), float(high)


@register_step("scale_percentiles")
@dataclass(frozen=True)
class ScalePercentiles(Step):
    """Map the image's own percentiles ``[lower, upper]`` to ``[out_low, out_high]`` per channel, clipping outside.

    Attributes:
        lower: lower percentile, 0–100 (e.g. 0.5).
        upper: upper percentile, 0–100 (e.g. 99.5).
        out_low: value at the lower percentile.
        out_high: value at the upper percentile.
        clip: clip the result to ``[out_low, out_high]``.
    """

    lower: float = 0.5
    upper: float = 99.5
    out_low: float = 0.0
    out_high: float = 1.0
    clip: bool = True

    def __post_init__(self) -> None:
        lo, hi = float(self.lower), float(self.upper)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi <= 100.0):
            raise ConfigError(f"scale_percentiles: need 0 <= lower < upper <= 100, got lower={lo}, upper={hi}")
        if not (math.isfinite(float(self.out_low)) and math.isfinite(float(self.out_high))):
            raise ConfigError("scale_percentiles: out_low and out_high must be finite numbers")

    def __call__(self, volume: Volume) -> Volume:
        if volume.kind != "intensity":
            return volume
        x = as_tensor(volume.array)
        if not F.all_finite(x):
            raise InputError(
                f"{volume.meta.get('source') or 'volume'}: scale_percentiles got NaN or infinite voxels; "
                "fix or mask them before intensity normalisation"
            )
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        windows = []
        for c in range(x.shape[0]):
            low, high = percentiles(x[c], float(self.lower), float(self.upper))
            windows.append([low, high])
            if high <= low:  # a constant channel: every voxel sits at the window's start
                out[c] = float(self.out_low)
                continue
            out[c] = F.scale_intensity(x[c], low, high, float(self.out_low), float(self.out_high), self.clip)
        return volume.with_step(out, None, self.entry(**self.options(), window=windows))
