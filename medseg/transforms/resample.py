"""``resample`` to a spacing or shape, and ``resample_to`` a reference grid.

Grid convention of ``resample`` (the one of SimpleITK/nnU-Net users): the physical
extent of the image, from the outer corner of the first voxel to the outer corner of
the last, is kept. The new spacing is exactly the one asked for; the new shape is
``round(shape * spacing / new_spacing)``; the first voxel centre moves by half the
spacing difference along each axis, so output voxel ``i`` samples input position
``(i + 0.5) * r - 0.5`` with ``r = new_spacing / spacing``. Directions are unchanged
(oblique stays oblique), so the work is separable and uses no grid_sample.

``grid="first_voxel"`` is MONAI ``Spacing``'s convention instead: the first voxel centre
stays where it is and the shape is ``round((shape - 1) * spacing / new_spacing) + 1``, so
output voxel ``i`` samples input position ``i * r`` (edge values beyond the last voxel).
A pipeline ported from MONAI gets the same tensor, hence the same predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from medseg.core.steps import Box, Step, register_step
from medseg.core.volume import Grid, HistoryEntry, Volume
from medseg.errors import ConfigError
from medseg.transforms.functional.convert import as_tensor
from medseg.transforms.functional.resample import (
    MODES,
    Mode,
    resample_labels_linear,
    resample_separable,
    resample_to_grid,
)
from medseg.transforms.grid_state import grid_state, resample_back, restrict_world

Interpolation = Literal["nearest", "linear", "cubic"]
GridConvention = Literal["extent", "first_voxel"]
LabelInterpolation = Literal["nearest", "linear"]


def _check_mode(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise ConfigError(f"resample: {what} must be one of {tuple(allowed)}, got {value!r}")


def _triple(value: float | Sequence[float] | None, what: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    vals = [value] * 3 if isinstance(value, (int, float)) else list(value)
    if len(vals) != 3:
        raise ConfigError(f"resample: {what} needs 3 values (X, Y, Z), got {value!r}")
    return tuple(float(v) for v in vals)  # type: ignore[return-value]


@register_step("resample")
@dataclass(frozen=True)
class Resample(Step):
    """Resample to a voxel ``spacing`` (mm) or a ``shape``, keeping the physical extent.

    Intensities and probabilities use ``mode`` (linear by default; ``cubic`` is a cubic
    B-spline); labels use ``label_mode`` (nearest, or linear on one-hot masks then argmax).
    An axis of one voxel (2D images) keeps its size and spacing when ``spacing`` is given.

    Attributes:
        spacing: target voxel size in mm, one value or ``(X, Y, Z)``; all > 0.
        shape: target ``(X, Y, Z)`` in voxels (instead of ``spacing``).
        mode: ``"linear"``, ``"cubic"`` or ``"nearest"`` for intensities/probabilities.
        label_mode: ``"nearest"`` or ``"linear"`` (one-hot) for label maps.
        anisotropic: nnU-Net's rule — when the coarsest input spacing is more than 3×
            the finest, resample across that axis with ``anisotropic_mode`` and in-plane
            with ``mode``.
        anisotropic_mode: interpolation across the coarse axis (nnU-Net: nearest).
        grid: ``"extent"`` keeps the outer extent (SimpleITK, nnU-Net); ``"first_voxel"``
            keeps the first voxel centre (MONAI ``Spacing``), see the module docstring.
    """

    spacing: float | tuple[float, float, float] | None = None
    shape: tuple[int, int, int] | None = None
    mode: Interpolation = "linear"
    label_mode: LabelInterpolation = "nearest"
    anisotropic: bool = False
    anisotropic_mode: Interpolation = "nearest"
    grid: GridConvention = "extent"

    def __post_init__(self) -> None:
        if (self.spacing is None) == (self.shape is None):
            raise ConfigError("resample: give exactly one of 'spacing' (mm) or 'shape' (voxels)")
        spacing = _triple(self.spacing, "spacing")
        if spacing is not None:
            if not all(np.isfinite(s) and s > 0 for s in spacing):
                raise ConfigError(f"resample: spacing must be > 0 mm on every axis, got {spacing}")
            object.__setattr__(self, "spacing", spacing)
        if self.shape is not None:
            shape = tuple(int(s) for s in self.shape)
            if len(shape) != 3 or any(s < 1 for s in shape):
                raise ConfigError(f"resample: shape must be 3 positive voxel counts (X, Y, Z), got {self.shape!r}")
            object.__setattr__(self, "shape", shape)
        _check_mode(self.mode, MODES, "mode")
        _check_mode(self.label_mode, ("nearest", "linear"), "label_mode")
        _check_mode(self.anisotropic_mode, MODES, "anisotropic_mode")
        _check_mode(self.grid, ("extent", "first_voxel"), "grid")

    def target(self, volume: Volume) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray]:
        """``(shape, affine, ratio)`` of the output grid for ``volume``; ``ratio`` = new / old spacing."""
        n = np.array(volume.spatial_shape, dtype=np.float64)
        sp = np.array(volume.spacing, dtype=np.float64)
        # "extent" measures the image edge to edge; "first_voxel" centre to centre, one voxel fewer
        centres = 0.0 if self.grid == "extent" else 1.0
        if self.spacing is not None:
            new_sp = np.where(n == 1, sp, np.asarray(self.spacing, dtype=np.float64))
            shape = np.maximum(1, np.round((n - centres) * sp / new_sp) + centres).astype(int)
        else:
            shape = np.asarray(self.shape, dtype=int)
            new_sp = np.where(shape > centres, (n - centres) * sp / np.maximum(shape - centres, 1), sp)
        ratio = new_sp / sp
        voxel_map = np.eye(4)
        voxel_map[:3, :3] = np.diag(ratio)
        voxel_map[:3, 3] = (ratio - 1.0) / 2.0 if self.grid == "extent" else 0.0
        return tuple(int(s) for s in shape), volume.affine @ voxel_map, ratio  # type: ignore[return-value]

    def axis_modes(self, volume: Volume, mode: Mode) -> tuple[Mode, Mode, Mode]:
        """Interpolation per axis: ``mode`` everywhere, or nnU-Net's anisotropic split."""
        modes: list[Mode] = [mode] * 3
        sp = [s for s, n in zip(volume.spacing, volume.spatial_shape) if n > 1]
        if self.anisotropic and sp and max(sp) > 3.0 * min(sp):
            coarse = int(np.argmax([s if n > 1 else 0.0 for s, n in zip(volume.spacing, volume.spatial_shape)]))
            modes[coarse] = self.anisotropic_mode
        return tuple(modes)  # type: ignore[return-value]

    def __call__(self, volume: Volume) -> Volume:
        shape, affine, ratio = self.target(volume)
        x = as_tensor(volume.array)
        offset = (ratio - 1.0) / 2.0 if self.grid == "extent" else np.zeros(3)
        if volume.kind == "label" and self.label_mode == "nearest":
            out = resample_separable(x, shape, ratio, offset, ("nearest",) * 3)
        elif volume.kind == "label":
            modes = self.axis_modes(volume, "linear")
            out = torch.cat(
                [
                    resample_labels_linear(x[c : c + 1], lambda m: resample_separable(m, shape, ratio, offset, modes))
                    for c in range(x.shape[0])
                ]
            )
        else:
            modes = self.axis_modes(volume, self.mode)
            xf = x if x.is_floating_point() else x.to(torch.float32)
            out = resample_separable(xf, shape, ratio, offset, modes)
        entry = self.entry(**grid_state(volume, shape, spacing=[float(s) for s in ratio * volume.spacing]))
        return volume.with_step(out, affine, entry)

    @classmethod
    def inverse(cls, volume: Volume, entry: HistoryEntry) -> Volume:
        """Back onto the input grid: labels nearest, probabilities/logits/intensities linear."""
        return resample_back(volume, entry)

    @classmethod
    def restrict(
        cls, entry: HistoryEntry, box: Box, out_shape: tuple[int, ...], out_affine: np.ndarray
    ) -> tuple[HistoryEntry, Box]:
        """The inverse interpolates linearly by world position: a part reads a box one voxel wider."""
        return restrict_world(entry, box, out_shape, out_affine, stencil=1)


@register_step("resample_to")
@dataclass(frozen=True)
class ResampleTo(Step):
    """Resample onto a reference grid (e.g. a label map onto its image), any orientation.

    Axis-aligned targets use the separable path; oblique or permuted ones ``grid_sample``.
    Output voxels outside the input get ``fill`` (labels: 0).

    Attributes:
        reference: the target :class:`~medseg.core.Grid` or a :class:`~medseg.core.Volume` on it.
        mode: ``"linear"``, ``"nearest"`` (or ``"cubic"`` for axis-aligned grids) for intensities.
        label_mode: ``"nearest"`` or ``"linear"`` (one-hot, then argmax) for labels.
        fill: value outside the input for intensities/probabilities (None: extend the
            edge voxels, as MONAI's ``padding_mode="border"``).
    """

    reference: Grid | Volume
    mode: Interpolation = "linear"
    label_mode: LabelInterpolation = "nearest"
    fill: float | None = 0.0

    def __post_init__(self) -> None:
        ref = self.reference
        if isinstance(ref, Volume):
            object.__setattr__(self, "reference", ref.grid)
        elif not isinstance(ref, Grid):
            raise ConfigError(f"resample_to: reference must be a Grid or a Volume, got {type(ref).__name__}")
        _check_mode(self.mode, MODES, "mode")
        _check_mode(self.label_mode, ("nearest", "linear"), "label_mode")

    def __call__(self, volume: Volume) -> Volume:
        ref: Grid = self.reference  # type: ignore[assignment]  # a Grid after __post_init__
        x = as_tensor(volume.array)
        try:
            if volume.kind == "label" and self.label_mode == "nearest":
                out = resample_to_grid(x, volume.affine, ref.shape, ref.affine, "nearest", fill=0.0)
            elif volume.kind == "label":
                out = torch.cat(
                    [
                        resample_labels_linear(
                            x[c : c + 1],
                            lambda m: resample_to_grid(m, volume.affine, ref.shape, ref.affine, "linear", fill=0.0),
                        )
                        for c in range(x.shape[0])
                    ]
                )
            else:
                out = resample_to_grid(x, volume.affine, ref.shape, ref.affine, self.mode, fill=self.fill)
        except ValueError as exc:
            raise ConfigError(f"resample_to: {exc}") from exc
        return volume.with_step(out, ref.affine, self.entry(**grid_state(volume, ref.shape)))

    @classmethod
    def inverse(cls, volume: Volume, entry: HistoryEntry) -> Volume:
        """Back onto the input grid; parts the reference did not cover become background."""
        return resample_back(volume, entry, outside_fill=True)
