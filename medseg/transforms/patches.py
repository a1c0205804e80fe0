"""Random training patches with nnU-Net's foreground oversampling.

:class:`RandomPatches` draws training patches, a chosen share of them centred on a
foreground voxel. Windows that tile a whole volume for inference are placed by
:mod:`medseg.inference.windows` (MONAI's placement, one owner).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medseg.core.volume import ArrayLike, Volume
from medseg.errors import ConfigError, InputError
from medseg.transforms.functional.convert import as_tensor
from medseg.transforms.functional.croppad import crop_or_pad


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
