"""Per-label statistics (the one implementation): voxels, volume (mL), bounding box, centroid, intensity.

Used by the ``label_statistics`` post-processing step and by the ``stats`` exporter, so a report
and a pipeline's ``meta["statistics"]`` always hold the same fields and numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.core.steps import Step, register_step
from medseg.core.volume import Volume
from medseg.postprocess.labelmap import label_array

#: Fields of every record, in report order.
FIELDS = (
    "label",
    "name",
    "voxels",
    "volume_ml",
    "bbox_min_voxel",
    "bbox_max_voxel",
    "bbox_min_ras_mm",
    "bbox_max_ras_mm",
    "centroid_ras_mm",
    "mean_intensity",
    "std_intensity",
    "min_intensity",
    "max_intensity",
)


def label_statistics(
    label: Volume,
    image: Volume | None = None,
    names: Mapping[int, str] | None = None,
    *,
    labels: Iterable[int] | None = None,
) -> list[dict[str, Any]]:
    """One record per label: every label present, plus every label in ``names`` or ``labels``.

    Args:
        label: label Volume ``(1, X, Y, Z)``.
        image: optional intensity Volume on the same grid (first channel used) for the mean,
            std, min and max intensity (e.g. HU) inside each label.
        names: label → name; unnamed labels read ``"label_<k>"``. Named labels without voxels
            get a record with zero voxels (and None where nothing can be measured).
        labels: more labels to report even when absent.

    Returns:
        dicts with :data:`FIELDS`: ``voxels``, ``volume_ml`` (|det affine| mm³ per voxel; 1 mL =
        1000 mm³), ``bbox_min_voxel``/``bbox_max_voxel`` (voxel indices, inclusive), the box
        around the labelled voxel centres in world RAS mm (axis-aligned in world space), the
        centroid in RAS mm and, with ``image``, intensity statistics; sorted by label.

    Raises:
        InputError: ``label`` is not a one-channel integer label Volume.
        GeometryError: ``image`` lies on another grid.
    """
    arr = label_array(label, "label_statistics")
    values = None
    if image is not None:
        label.require_grid(image, "image")
        values = image.numpy()[0].astype(np.float64)
    counts = np.bincount(arr.ravel())
    present = [int(k) for k in np.flatnonzero(counts[1:]) + 1]
    wanted = sorted(set(present) | {int(k) for k in (names or {})} | {int(k) for k in (labels or ())} - {0})
    boxes = ndimage.find_objects(arr.astype(np.int64, copy=False), max_label=max(present, default=0))
    voxel_ml = label.voxel_volume_mm3 / 1000.0
    out = []
    for k in wanted:
        n = int(counts[k]) if k < counts.size else 0
        rec: dict[str, Any] = dict.fromkeys(FIELDS)
        rec.update(label=k, name=(names or {}).get(k, f"label_{k}"), voxels=n, volume_ml=n * voxel_ml)
        if n:
            box = boxes[k - 1]
            inside = np.argwhere(arr[box] == k) + np.array([s.start for s in box])
            world = inside @ label.affine[:3, :3].T + label.affine[:3, 3]
            rec.update(
                bbox_min_voxel=[int(s.start) for s in box],
                bbox_max_voxel=[int(s.stop) - 1 for s in box],
                bbox_min_ras_mm=[round(float(c), 3) for c in world.min(axis=0)],
                bbox_max_ras_mm=[round(float(c), 3) for c in world.max(axis=0)],
                centroid_ras_mm=[round(float(c), 3) for c in world.mean(axis=0)],
            )
            if values is not None:
                vals = values[box][arr[box] == k]
                rec.update(
                    mean_intensity=float(vals.mean()),
                    std_intensity=float(vals.std()),
                    min_intensity=float(vals.min()),
                    max_intensity=float(vals.max()),
                )
        out.append(rec)
    return out


@register_step("label_statistics", stage="postprocess")
@dataclass(frozen=True)
class LabelStatistics(Step):
    """Store :func:`label_statistics` (without intensities) in ``meta["statistics"]``.

    Attributes:
        names: label → name used in the records.
    """

    names: dict[int, str] | None = None

    def __call__(self, volume: Volume) -> Volume:
        stats = label_statistics(volume, None, self.names)
        return volume.replace(meta={**volume.meta, "statistics": stats}, history=(*volume.history, self.entry()))
