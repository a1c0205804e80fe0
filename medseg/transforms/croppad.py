"""``crop``, ``crop_foreground`` and ``pad``: change the array extent and move the origin to match.

Cropping keeps voxel ``(x0, y0, z0)`` at its world position (the origin moves to it);
padding adds voxels before the first one (the origin moves back). Each is the other's
inverse, exactly. Undoing a crop on a prediction fills the removed border with
background: 0 for labels and intensities, and for probabilities 1 in channel 0
(background) and 0 elsewhere, as nnU-Net does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medseg.core.steps import Step, register_step
from medseg.core.volume import HistoryEntry, Volume
from medseg.errors import ConfigError, InputError
from medseg.transforms.functional.convert import as_tensor
from medseg.transforms.functional.croppad import crop, pad
from medseg.transforms.grid_state import background_fill, grid_state, input_grid

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def shifted_affine(affine: np.ndarray, start: Sequence[int]) -> np.ndarray:
    """The affine of a block whose voxel 0 is voxel ``start`` of ``affine``'s grid."""
    out = np.array(affine, dtype=np.float64, copy=True)
    out[:3, 3] = affine[:3, :3] @ np.asarray(start, dtype=np.float64) + affine[:3, 3]
    return out


def _apply_crop(step: Step, volume: Volume, box: Box) -> Volume:
    x = crop(as_tensor(volume.array), box)
    start = [b[0] for b in box]
    entry = step.entry(**grid_state(volume, x.shape[1:], box=[list(b) for b in box]))
    return volume.with_step(x, shifted_affine(volume.affine, start), entry)


def _undo_crop(volume: Volume, entry: HistoryEntry) -> Volume:
    shape, affine = input_grid(entry)
    box = [tuple(int(v) for v in b) for b in entry.state["box"]]
    before = [b[0] for b in box]
    after = [n - b[1] for n, b in zip(shape, box)]
    x = pad(as_tensor(volume.array), before, after, background_fill(volume))
    return volume.replace(array=x, affine=affine)


def _source(volume: Volume) -> str:
    return str(volume.meta.get("source") or "volume")


@register_step("crop")
@dataclass(frozen=True)
class Crop(Step):
    """Crop to a voxel ``box`` or, with ``shape``, to the centre block of that size.

    Attributes:
        box: ``((x0, x1), (y0, y1), (z0, z1))`` half-open voxel ranges inside the volume.
        shape: ``(X, Y, Z)`` of a centred crop (each at most the volume's size).
    """

    box: Box | None = None
    shape: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        if (self.box is None) == (self.shape is None):
            raise ConfigError("crop: give exactly one of 'box' ((x0, x1), (y0, y1), (z0, z1)) or 'shape' (X, Y, Z)")
        if self.box is not None:
            box = tuple(tuple(int(v) for v in b) for b in self.box)
            if len(box) != 3 or any(len(b) != 2 or b[0] < 0 or b[1] <= b[0] for b in box):
                raise ConfigError(f"crop: box must be 3 ranges (start, stop) with 0 <= start < stop, got {self.box!r}")
            object.__setattr__(self, "box", box)
        if self.shape is not None:
            shape = tuple(int(s) for s in self.shape)
            if len(shape) != 3 or any(s < 1 for s in shape):
                raise ConfigError(f"crop: shape must be 3 positive voxel counts, got {self.shape!r}")
            object.__setattr__(self, "shape", shape)

    def box_for(self, spatial_shape: Sequence[int]) -> Box:
        """The crop box for a volume of ``spatial_shape``.

        Raises:
            InputError: the box or shape does not fit inside the volume.
        """
        if self.shape is not None:
            if any(s > n for s, n in zip(self.shape, spatial_shape)):
                raise InputError(
                    f"crop: shape {self.shape} is larger than the volume {tuple(spatial_shape)}; "
                    "pad first (pad min_shape) or crop less"
                )
            return tuple((int((n - s) // 2), int((n - s) // 2 + s)) for s, n in zip(self.shape, spatial_shape))  # type: ignore[return-value]
        box: Box = self.box  # type: ignore[assignment]
        if any(b[1] > n for b, n in zip(box, spatial_shape)):
            raise InputError(f"crop: box {box} reaches past the volume {tuple(spatial_shape)}")
        return box

    def __call__(self, volume: Volume) -> Volume:
        try:
            box = self.box_for(volume.spatial_shape)
        except InputError as exc:
            raise InputError(f"{_source(volume)}: {exc}") from exc
        return _apply_crop(self, volume, box)

    @classmethod
    def inverse(cls, volume: Volume, entry: HistoryEntry) -> Volume:
        """Pad back to the input grid with background (see module docstring)."""
        return _undo_crop(volume, entry)


@register_step("crop_foreground")
@dataclass(frozen=True)
class CropForeground(Step):
    """Crop to the bounding box of the foreground plus a margin.

    Foreground is ``channel`` != 0, or ``> threshold`` when given. A volume without
    foreground is kept whole (the step is still recorded).

    Attributes:
        threshold: intensity above which a voxel is foreground (None: nonzero).
        margin_mm: margin added around the box on every side, in mm (rounded up to voxels).
        channel: the channel that defines the foreground.
    """

    threshold: float | None = None
    margin_mm: float = 0.0
    channel: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(float(self.margin_mm)) and float(self.margin_mm) >= 0):
            raise ConfigError(f"crop_foreground: margin_mm must be >= 0 mm, got {self.margin_mm}")

    def box_for(self, volume: Volume) -> Box:
        """The foreground bounding box (with margin) of ``volume``."""
        if not 0 <= self.channel < volume.n_channels:
            raise InputError(
                f"{_source(volume)}: crop_foreground channel {self.channel} does not exist "
                f"(volume has {volume.n_channels} channels)"
            )
        x = as_tensor(volume.array)[self.channel]
        mask = x != 0 if self.threshold is None else x > self.threshold
        shape = volume.spatial_shape
        margin = [math.ceil(float(self.margin_mm) / s - 1e-9) for s in volume.spacing]
        box = []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            hits = torch.nonzero(mask.any(dim=other[1]).any(dim=other[0])).flatten()
            if len(hits) == 0:
                return ((0, shape[0]), (0, shape[1]), (0, shape[2]))
            lo, hi = int(hits[0]), int(hits[-1]) + 1
            box.append((max(lo - margin[axis], 0), min(hi + margin[axis], shape[axis])))
        return tuple(box)  # type: ignore[return-value]

    def __call__(self, volume: Volume) -> Volume:
        return _apply_crop(self, volume, self.box_for(volume))

    @classmethod
    def inverse(cls, volume: Volume, entry: HistoryEntry) -> Volume:
        """Pad back to the input grid with background (see module docstring)."""
        return _undo_crop(volume, entry)


def _per_axis(value: int | Sequence[int] | None, what: str) -> tuple[int, int, int] | None:
    if value is None:
        return None
    vals = [value] * 3 if isinstance(value, (int, float)) else list(value)
    if len(vals) != 3 or any(int(v) != v or int(v) < 1 for v in vals):
        raise ConfigError(f"pad: {what} must be a positive integer or 3 of them (X, Y, Z), got {value!r}")
    return tuple(int(v) for v in vals)  # type: ignore[return-value]


@register_step("pad")
@dataclass(frozen=True)
class Pad(Step):
    """Pad symmetrically (extra voxel after) to at least ``min_shape`` and/or a multiple of ``multiple_of``.

    ``multiple_of=2**depth`` makes a volume fit a U-Net of that depth; use
    ``(16, 16, 1)`` for 2D. The inverse crops the padding off exactly.

    Attributes:
        min_shape: smallest ``(X, Y, Z)`` (one int for all axes).
        multiple_of: each axis padded up to a multiple of this (one int or ``(X, Y, Z)``).
        value: fill value for intensities (labels are padded with 0).
    """

    min_shape: int | tuple[int, int, int] | None = None
    multiple_of: int | tuple[int, int, int] | None = None
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.min_shape is None and self.multiple_of is None:
            raise ConfigError("pad: give 'min_shape' and/or 'multiple_of'")
        object.__setattr__(self, "min_shape", _per_axis(self.min_shape, "min_shape"))
        object.__setattr__(self, "multiple_of", _per_axis(self.multiple_of, "multiple_of"))

    def target_shape(self, spatial_shape: Sequence[int]) -> tuple[int, int, int]:
        """The padded ``(X, Y, Z)`` for a volume of ``spatial_shape``."""
        shape = [int(n) for n in spatial_shape]
        if self.min_shape is not None:
            shape = [max(n, m) for n, m in zip(shape, self.min_shape)]  # type: ignore[arg-type]
        if self.multiple_of is not None:
            shape = [math.ceil(n / k) * k for n, k in zip(shape, self.multiple_of)]  # type: ignore[arg-type]
        return tuple(shape)  # type: ignore[return-value]

    def __call__(self, volume: Volume) -> Volume:
        target = self.target_shape(volume.spatial_shape)
        before = [(t - n) // 2 for t, n in zip(target, volume.spatial_shape)]
        after = [t - n - b for t, n, b in zip(target, volume.spatial_shape, before)]
        fill = (
            0.0 if volume.kind == "label" else background_fill(volume) if volume.kind == "probability" else self.value
        )
        x = pad(as_tensor(volume.array), before, after, fill)
        entry = self.entry(**grid_state(volume, target, before=before, after=after))
        return volume.with_step(x, shifted_affine(volume.affine, [-b for b in before]), entry)

    @classmethod
    def inverse(cls, volume: Volume, entry: HistoryEntry) -> Volume:
        """Crop the padding off; the affine becomes the recorded input affine."""
        shape, affine = input_grid(entry)
        before = [int(b) for b in entry.state["before"]]
        box = [(b, b + n) for b, n in zip(before, shape)]
        return volume.replace(array=crop(as_tensor(volume.array), box), affine=affine)
