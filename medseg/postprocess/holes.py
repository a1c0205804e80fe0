"""Hole filling per label, in 3D or slice by slice (2D in each Z slice)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from medseg.core.steps import Step, register_step
from medseg.core.volume import Volume
from medseg.errors import ConfigError
from medseg.postprocess.labelmap import label_array, with_labels

FillMode = Literal["3d", "2d"]


def _structure(mode: str) -> np.ndarray:
    if mode == "3d":
        return ndimage.generate_binary_structure(3, 1)
    if mode == "2d":
        s = np.zeros((3, 3, 3), dtype=bool)
        s[:, :, 1] = ndimage.generate_binary_structure(2, 1)  # neighbours within the Z slice only
        return s
    raise ConfigError(f"fill_holes: mode must be '3d' or '2d' (per Z slice), got {mode!r}")


def fill_holes(labels: np.ndarray, *, mode: FillMode = "3d", labels_to_fill: Sequence[int] | None = None) -> np.ndarray:
    """Fill background cavities enclosed by each label.

    A hole is a background (0) region not connected (face neighbours) to the outside of
    the label's bounding box; voxels of other labels are never overwritten.

    Args:
        labels: integer label map ``(X, Y, Z)``.
        mode: ``"3d"`` (enclosed in 3D) or ``"2d"`` (enclosed within each Z slice).
        labels_to_fill: labels to process; default: every non-zero label.

    Returns:
        a new label map with the holes set to the enclosing label.
    """
    structure = _structure(mode)
    out = labels.copy()
    todo = [int(v) for v in np.unique(labels) if v != 0] if labels_to_fill is None else list(labels_to_fill)
    for lab, box in _boxes(labels, todo):
        mask = labels[box] == lab
        filled = ndimage.binary_fill_holes(mask, structure=structure)
        region = out[box]
        region[filled & (labels[box] == 0)] = lab
    return out


def _boxes(labels: np.ndarray, todo: list[int]) -> list[tuple[int, tuple[slice, ...]]]:
    """Bounding box of each label in ``todo`` that is present (one pass via find_objects)."""
    if not todo:
        return []
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, dtype=np.int32)
    wanted = [v for v in todo if 0 < v < lut.size]
    lut[wanted] = np.arange(1, len(wanted) + 1)
    objects = ndimage.find_objects(lut[labels])
    return [(v, box) for v, box in zip(wanted, objects) if box is not None]


@register_step("fill_holes", stage="postprocess")
@dataclass(frozen=True)
class FillHoles(Step):
    """Fill enclosed background holes of each label.

    Attributes:
        mode: ``"3d"`` or ``"2d"`` (per Z slice).
        labels: labels to fill; None = all.
    """

    mode: FillMode = "3d"
    labels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _structure(self.mode)
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(int(v) for v in self.labels))

    def __call__(self, volume: Volume) -> Volume:
        labels = label_array(volume, self.name)
        out = fill_holes(labels, mode=self.mode, labels_to_fill=self.labels)
        return with_labels(volume, out, self.entry(filled_voxels=int(np.count_nonzero(labels != out))))
