"""Patches: a sliding grid that covers a volume exactly, and random training patches.

:class:`GridPatches` cuts a volume into overlapping patches (padded at the borders
when the volume is smaller than a patch) and puts them back together;
:class:`RandomPatches` draws training patches with nnU-Net's foreground
oversampling (a third of the patches centred on a foreground voxel).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medseg.core.volume import ArrayLike, Volume
from medseg.errors import ConfigError, InputError
from medseg.transforms.functional.convert import as_tensor
from medseg.transforms.functional.croppad import crop_or_pad

Position = tuple[slice, slice, slice]


def _patch_size(patch_size: Sequence[int], what: str) -> tuple[int, int, int]:
    size = tuple(int(p) for p in patch_size)
    if len(size) != 3 or any(p < 1 for p in size) or any(int(p) != p for p in patch_size):
        raise ConfigError(
            f"{what}: patch_size must be 3 positive integers (X, Y, Z) in voxels (Z = 1 for 2D), "
            f"got {tuple(patch_size)}"
        )
    return size  # type: ignore[return-value]


def _as_tensor(data: Volume | ArrayLike) -> torch.Tensor:
    t = as_tensor(data.array if isinstance(data, Volume) else data)
    if t.ndim != 4:
        raise InputError(f"patches need a channel-first (C, X, Y, Z) array, got shape {tuple(t.shape)}")
    return t


def _starts(size: int, patch: int, step: float) -> list[int]:
    """nnU-Net's evenly spaced window starts: first at 0, last at ``size - patch``."""
    if size <= patch:
        return [0]
    n = math.ceil((size - patch) / step) + 1
    span = size - patch
    return sorted({round(i * span / (n - 1)) for i in range(n)})


@dataclass(frozen=True)
class GridPatches:
    """Overlapping patches on a regular grid that cover the whole volume.

    Windows are evenly spaced with at least ``overlap`` between neighbours; the first
    starts at voxel 0 and the last ends at the last voxel, so every voxel is covered.
    Along an axis shorter than the patch there is one window starting at 0, and the
    patch is padded with ``pad_value`` past the end of the volume.

    Attributes:
        patch_size: ``(X, Y, Z)`` voxels (``Z = 1`` for 2D).
        overlap: fraction of the patch shared by neighbouring windows, in ``[0, 1)``.
        pad_value: fill for patch voxels outside the volume.
        allow_padding: when False, a patch larger than the volume is an error.

    Example::

        grid = GridPatches((96, 96, 64), overlap=0.5)
        for patch, position in grid.patches(volume):   # patch (C, 96, 96, 64)
            ...
        whole = grid.assemble(outputs, volume.spatial_shape)  # (C', X, Y, Z)
    """

    patch_size: tuple[int, int, int]
    overlap: float = 0.5
    pad_value: float = 0.0
    allow_padding: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", _patch_size(self.patch_size, "GridPatches"))
        if not 0.0 <= float(self.overlap) < 1.0:
            raise ConfigError(f"GridPatches: overlap must be in [0, 1) (a fraction of the patch), got {self.overlap}")

    def positions(self, spatial_shape: Sequence[int]) -> list[Position]:
        """The windows for a volume of ``spatial_shape`` ``(X, Y, Z)``, as slices (may end past the volume).

        Raises:
            InputError: a patch is larger than the volume and ``allow_padding`` is False.
        """
        shape = tuple(int(s) for s in spatial_shape)
        if not self.allow_padding and any(p > s for p, s in zip(self.patch_size, shape)):
            raise InputError(
                f"patch_size {self.patch_size} is larger than the volume {shape}; use a smaller patch, "
                "pad the volume (pad min_shape) or set allow_padding=True"
            )
        steps = [max(1.0, p * (1.0 - float(self.overlap))) for p in self.patch_size]
        starts = [_starts(s, p, st) for s, p, st in zip(shape, self.patch_size, steps)]
        return [
            (slice(x, x + self.patch_size[0]), slice(y, y + self.patch_size[1]), slice(z, z + self.patch_size[2]))
            for x in starts[0]
            for y in starts[1]
            for z in starts[2]
        ]

    def patches(self, data: Volume | ArrayLike) -> Iterator[tuple[torch.Tensor, Position]]:
        """Yield ``(patch (C, *patch_size), position)`` for every window, on the data's device."""
        x = _as_tensor(data)
        for pos in self.positions(x.shape[1:]):
            yield crop_or_pad(x, [s.start for s in pos], self.patch_size, self.pad_value), pos

    def assemble(
        self,
        patches: Sequence[tuple[torch.Tensor, Position]] | Iterator[tuple[torch.Tensor, Position]],
        spatial_shape: Sequence[int],
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Put patches back on the volume grid, averaging (optionally ``weight``-ed) overlaps.

        Args:
            patches: ``(patch (C, *patch_size), position)`` pairs as from :meth:`patches`.
            spatial_shape: ``(X, Y, Z)`` of the volume.
            weight: optional ``patch_size`` weights (e.g. a Gaussian) applied to every patch.

        Returns:
            ``(C, X, Y, Z)`` float tensor on the patches' device.
        """
        shape = tuple(int(s) for s in spatial_shape)
        out = norm = None
        for patch, pos in patches:
            if out is None or norm is None:
                out = torch.zeros((patch.shape[0], *shape), dtype=torch.float32, device=patch.device)
                norm = torch.zeros(shape, dtype=torch.float32, device=patch.device)
            keep = tuple(slice(0, min(s.stop, n) - s.start) for s, n in zip(pos, shape))
            dst = tuple(slice(s.start, min(s.stop, n)) for s, n in zip(pos, shape))
            w = 1.0 if weight is None else weight.to(patch.device)[keep]
            out[(slice(None), *dst)] += patch[(slice(None), *keep)].float() * w
            norm[dst] += w
        if out is None or norm is None:
            raise InputError("GridPatches.assemble: no patches given")
        return out / norm.clamp_min(1e-8)


@dataclass(frozen=True)
class RandomPatches:
    """Random training patches with nnU-Net's foreground oversampling.

    Of ``n`` patches, the last ``round(n * foreground_ratio)`` are centred on a random
    foreground voxel (label > 0) — the rest are placed uniformly. With
    ``class_balanced`` a class is first chosen uniformly among the classes present,
    then a voxel of that class. Patch starts are kept within nnU-Net's bounds: inside
    the volume when it is larger than the patch, else centred with padding; padded
    voxels get ``pad_value`` in the image and 0 in the label.

    Attributes:
        patch_size: ``(X, Y, Z)`` voxels (``Z = 1`` for 2D).
        foreground_ratio: fraction of patches forced onto foreground (nnU-Net: 0.33).
        class_balanced: choose the class uniformly before the voxel.
        pad_value: image fill outside the volume (e.g. the minimum intensity).
    """

    patch_size: tuple[int, int, int]
    foreground_ratio: float = 0.33
    class_balanced: bool = False
    pad_value: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", _patch_size(self.patch_size, "RandomPatches"))
        if not 0.0 <= float(self.foreground_ratio) <= 1.0:
            raise ConfigError(f"RandomPatches: foreground_ratio must be in [0, 1], got {self.foreground_ratio}")

    def n_foreground(self, n: int) -> int:
        """How many of ``n`` patches are forced onto foreground."""
        return n - round(n * (1.0 - float(self.foreground_ratio)))

    def class_locations(self, label: Volume | ArrayLike) -> dict[int, torch.Tensor]:
        """Voxel indices ``(K, 3)`` of every foreground class in ``label`` (channel 0), on its device."""
        lab = _as_tensor(label)[0]
        classes = [int(c) for c in torch.unique(lab).tolist() if c > 0]
        return {c: torch.nonzero(lab == c) for c in classes}

    def sample(
        self,
        image: Volume,
        label: Volume,
        n: int,
        rng: np.random.Generator,
        locations: dict[int, torch.Tensor] | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Draw ``n`` patches from ``image`` and ``label`` (same grid).

        Args:
            image: ``(C, X, Y, Z)`` intensity volume.
            label: ``(1, X, Y, Z)`` label volume on the image's grid.
            n: number of patches.
            rng: the random generator (seeded by the caller).
            locations: optional cached :meth:`class_locations` of ``label``.

        Returns:
            ``n`` pairs ``(image patch (C, *patch_size), label patch (1, *patch_size))``.

        Raises:
            GeometryError: the label does not lie on the image's grid.
        """
        image.require_grid(label, "label")
        img = _as_tensor(image)
        lab = _as_tensor(label)
        shape = img.shape[1:]
        need = [max(p - int(s), 0) for p, s in zip(self.patch_size, shape)]
        lower = [-(d // 2) for d in need]
        upper = [int(s) + d // 2 + d % 2 - p for s, d, p in zip(shape, need, self.patch_size)]
        n_fg = self.n_foreground(n)
        out = []
        for i in range(n):
            centre = None
            if i >= n - n_fg:
                if locations is None:
                    locations = self.class_locations(lab)
                centre = self._foreground_voxel(locations, rng)
            if centre is None:
                start = [int(rng.integers(lo, hi + 1)) for lo, hi in zip(lower, upper)]
            else:
                start = [min(max(c - p // 2, lo), hi) for c, p, lo, hi in zip(centre, self.patch_size, lower, upper)]
            out.append(
                (crop_or_pad(img, start, self.patch_size, self.pad_value), crop_or_pad(lab, start, self.patch_size, 0))
            )
        return out

    def _foreground_voxel(self, locations: dict[int, torch.Tensor], rng: np.random.Generator) -> list[int] | None:
        present = [c for c, idx in locations.items() if len(idx)]
        if not present:
            return None
        if self.class_balanced:
            idx = locations[present[int(rng.integers(len(present)))]]
        else:  # uniform over all foreground voxels: pick a class in proportion to its size
            counts = np.array([len(locations[c]) for c in present], dtype=np.float64)
            idx = locations[present[int(rng.choice(len(present), p=counts / counts.sum()))]]
        return [int(v) for v in idx[int(rng.integers(len(idx)))].tolist()]
