"""Per-label statistics: voxel count, volume (mL), bounding box, centroid, mean intensity."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.core.steps import Step, register_step
from medseg.core.volume import Volume
from medseg.postprocess.labelmap import label_array


def label_statistics(
    label: Volume, image: Volume | None = None, names: Mapping[int, str] | None = None
) -> list[dict[str, Any]]:
    """One record per non-zero label present in ``label``.

    Args:
        label: label Volume ``(1, X, Y, Z)``.
        image: optional intensity Volume on the same grid (first channel used) for the
            mean/std/min/max intensity (e.g. HU) inside each label.
        names: label → name; missing names read ``"label_<k>"``.

    Returns:
        dicts with ``label``, ``name``, ``voxels``, ``volume_ml``, ``bbox_min``/``bbox_max``
        (voxel indices, inclusive), ``centroid_mm`` (world RAS mm) and, with ``image``,
        ``mean_intensity``, ``std_intensity``, ``min_intensity``, ``max_intensity``.

    Raises:
        InputError: ``label`` is not a one-channel integer label Volume.
        GeometryError: ``image`` lies on another grid.
    """
    labels = label_array(label, "label_statistics")
    values = None
    if image is not None:
        label.require_grid(image, "image")
        values = image.numpy()[0].astype(np.float64)
    flat = labels.ravel()
    counts = np.bincount(flat)
    present = np.flatnonzero(counts[1:]) + 1
    if present.size == 0:
        return []
    boxes = ndimage.find_objects(labels)
    if values is not None:
        sums = np.bincount(flat, weights=values.ravel(), minlength=counts.size)
        sq = np.bincount(flat, weights=(values**2).ravel(), minlength=counts.size)
        mins = ndimage.minimum(values, labels, present)
        maxs = ndimage.maximum(values, labels, present)
    voxel_ml = label.voxel_volume_mm3 / 1000.0
    out = []
    for j, k in enumerate(present.tolist()):
        n = int(counts[k])
        box = boxes[k - 1]
        inside = np.nonzero(labels[box] == k)
        centre = np.array([float(i.mean()) + s.start for i, s in zip(inside, box)] + [1.0])
        rec: dict[str, Any] = {
            "label": k,
            "name": (names or {}).get(k, f"label_{k}"),
            "voxels": n,
            "volume_ml": n * voxel_ml,
            "bbox_min": [int(s.start) for s in box],
            "bbox_max": [int(s.stop) - 1 for s in box],
            "centroid_mm": [float(v) for v in (label.affine @ centre)[:3]],
        }
        if values is not None:
            mean = sums[k] / n
            rec.update(
                mean_intensity=float(mean),
                std_intensity=float(np.sqrt(max(sq[k] / n - mean**2, 0.0))),
                min_intensity=float(mins[j]),
                max_intensity=float(maxs[j]),
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
