"""``reorient``: permute/flip array axes to standard axis codes (RAS by default), exactly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseg.core.steps import Box, Step, register_step
from medseg.core.volume import HistoryEntry, Volume
from medseg.errors import ConfigError, GeometryError
from medseg.transforms.functional.convert import as_tensor
from medseg.transforms.functional.orientation import (
    apply_orientation,
    invert_transform,
    orientation_transform,
    transform_affine,
)
from medseg.transforms.grid_state import grid_state, input_grid, restrict_world

_PAIRS = ({"R", "L"}, {"A", "P"}, {"S", "I"})


@register_step("reorient")
@dataclass(frozen=True)
class Reorient(Step):
    """Permute and flip array axes so they point along ``axcodes`` (e.g. ``"RAS"``, ``"LPS"``).

    No interpolation: the voxel values and the world position of every voxel are kept,
    only the array layout and the affine change. Oblique volumes are brought to the
    nearest ``axcodes`` (they stay oblique). The inverse is the exact reverse.

    Attributes:
        axcodes: three letters, one of R/L, A/P, S/I each, in any order.
    """

    axcodes: str = "RAS"

    def __post_init__(self) -> None:
        codes = str(self.axcodes).upper()
        if len(codes) != 3 or sorted(p for c in codes for p, s in enumerate(_PAIRS) if c in s) != [0, 1, 2]:
            raise ConfigError(
                f"reorient: axcodes must be 3 letters with one of R/L, A/P, S/I each (e.g. 'RAS', 'LPS'), "
                f"got {self.axcodes!r}"
            )
        object.__setattr__(self, "axcodes", codes)

    def __call__(self, volume: Volume) -> Volume:
        transform = orientation_transform(volume.affine, self.axcodes)
        x = apply_orientation(as_tensor(volume.array), transform)
        affine = transform_affine(volume.affine, transform, volume.spatial_shape)
        entry = self.entry(**grid_state(volume, x.shape[1:], transform=transform.astype(int).tolist()))
        return volume.with_step(x, affine, entry)

    @classmethod
    def restrict(
        cls, entry: HistoryEntry, box: Box, out_shape: tuple[int, ...], out_affine: np.ndarray
    ) -> tuple[HistoryEntry, Box]:
        """A box maps to a box: the inverse only permutes and flips."""
        return restrict_world(entry, box, out_shape, out_affine, stencil=0)

    @classmethod
    def inverse(cls, volume: Volume, entry: HistoryEntry) -> Volume:
        """Undo the permutation/flips exactly; the affine becomes the recorded input affine."""
        shape, affine = input_grid(entry)
        back = invert_transform(np.asarray(entry.state["transform"], dtype=float))
        x = apply_orientation(as_tensor(volume.array), back)
        if tuple(x.shape[1:]) != shape:
            raise GeometryError(f"reorient inverse: got shape {tuple(x.shape[1:])}, history expects {shape}")
        return volume.replace(array=x, affine=affine)
