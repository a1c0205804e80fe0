"""Surface-distance metrics in mm: Hausdorff 95 %, ASSD, normalised surface Dice.

A mask's surface is its voxels that touch the background through a face
(``mask XOR erosion(mask)``, the voxels outside the array counting as background),
as in MONAI's ``get_mask_edges``. Distances are Euclidean between surface-voxel
centres using the spacing, computed with an exact distance transform restricted to
the bounding box of both masks.

Empty masks: both empty → Hausdorff 95 = ASSD = 0 and surface Dice = 1; exactly one
empty → distances NaN (undefined; excluded from means, counted in summaries) and
surface Dice 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medseg.metrics.masks import MaskLike, binary, pair


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances (mm) from each prediction-surface voxel to the reference surface and back.

    Attributes:
        pred_to_ref: one distance per surface voxel of the prediction.
        ref_to_pred: one distance per surface voxel of the reference.
    """

    pred_to_ref: np.ndarray
    ref_to_pred: np.ndarray

    @property
    def empty(self) -> tuple[bool, bool]:
        """Whether the prediction's and the reference's surfaces are empty."""
        return self.pred_to_ref.size == 0, self.ref_to_pred.size == 0

    def hausdorff(self, percentile: float = 95.0) -> float:
        """Symmetric Hausdorff distance at ``percentile`` (max of both directions), mm."""
        both = self._undefined()
        if both is not None:
            return both
        return float(max(np.percentile(self.pred_to_ref, percentile), np.percentile(self.ref_to_pred, percentile)))

    def average_symmetric(self) -> float:
        """Mean of all distances in both directions (ASSD), mm."""
        both = self._undefined()
        if both is not None:
            return both
        return float(np.concatenate([self.pred_to_ref, self.ref_to_pred]).mean())

    def surface_dice(self, tolerance_mm: float) -> float:
        """Fraction of both surfaces lying within ``tolerance_mm`` of the other surface."""
        ep, er = self.empty
        if ep and er:
            return 1.0
        if ep or er:
            return 0.0
        ok = np.count_nonzero(self.pred_to_ref <= tolerance_mm) + np.count_nonzero(self.ref_to_pred <= tolerance_mm)
        return float(ok / (self.pred_to_ref.size + self.ref_to_pred.size))

    def _undefined(self) -> float | None:
        ep, er = self.empty
        if ep and er:
            return 0.0
        if ep or er:
            return float("nan")
        return None


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a bool mask: those with a face-neighbour in the background."""
    return mask ^ ndimage.binary_erosion(mask, border_value=0)


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> SurfaceDistances:
    """Both directed surface-distance sets of two bool masks of the same shape (mm)."""
    union = pred | ref
    if not union.any():
        empty = np.zeros(0, dtype=np.float64)
        return SurfaceDistances(empty, empty)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(union))
    p = np.pad(pred[box], 1)
    r = np.pad(ref[box], 1)
    sp, sr = surface(p), surface(r)
    if not sp.any() or not sr.any():
        return SurfaceDistances(np.full(int(sp.sum()), np.inf), np.full(int(sr.sum()), np.inf))
    to_ref = ndimage.distance_transform_edt(~sr, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return SurfaceDistances(to_ref[sp], to_pred[sr])


def _distances(
    prediction: MaskLike, reference: MaskLike, label: int | None, spacing: Sequence[float] | float | None
) -> SurfaceDistances:
    p, r, sp = pair(prediction, reference, spacing)
    return surface_distances(binary(p, label), binary(r, label), sp)


def hausdorff95(
    prediction: MaskLike,
    reference: MaskLike,
    *,
    spacing: Sequence[float] | float | None = None,
    label: int | None = None,
) -> float:
    """Symmetric 95th-percentile Hausdorff distance (mm) between the surfaces of ``label``.

    Args:
        prediction: label array ``(X, Y, Z)``/``(1, X, Y, Z)``, bool mask, or label Volume.
        reference: same shape.
        spacing: voxel size in mm per axis; default: the Volume's spacing, else 1 mm.
        label: class to compare; None = all foreground.

    Returns:
        distance in mm; 0 when both masks are empty, NaN when only one is.
    """
    return _distances(prediction, reference, label, spacing).hausdorff(95.0)


def assd(
    prediction: MaskLike,
    reference: MaskLike,
    *,
    spacing: Sequence[float] | float | None = None,
    label: int | None = None,
) -> float:
    """Average symmetric surface distance (mm); 0 when both are empty, NaN when only one is."""
    return _distances(prediction, reference, label, spacing).average_symmetric()


def surface_dice(
    prediction: MaskLike,
    reference: MaskLike,
    *,
    tolerance_mm: float = 1.0,
    spacing: Sequence[float] | float | None = None,
    label: int | None = None,
) -> float:
    """Normalised surface Dice at ``tolerance_mm``: 1 when both are empty, 0 when only one is."""
    return _distances(prediction, reference, label, spacing).surface_dice(tolerance_mm)
