"""Pure functions on tensors ``(C, X, Y, Z)``: the work behind the steps, on any device.

They know nothing of :class:`~medseg.core.Volume` or history; the steps in
:mod:`medseg.transforms` compute the geometry and call them.
"""

from medseg.transforms.functional.convert import as_float, as_tensor
from medseg.transforms.functional.croppad import crop, crop_or_pad, pad
from medseg.transforms.functional.intensity import (
    all_finite,
    clip,
    foreground_statistics,
    percentile_clip_zscore,
    scale_intensity,
    zscore,
)
from medseg.transforms.functional.orientation import apply_orientation, orientation_transform
from medseg.transforms.functional.resample import (
    resample_grid,
    resample_labels_linear,
    resample_separable,
    resample_to_grid,
    voxel_map,
)

__all__ = [
    "all_finite",
    "apply_orientation",
    "as_float",
    "as_tensor",
    "clip",
    "crop",
    "crop_or_pad",
    "foreground_statistics",
    "orientation_transform",
    "pad",
    "percentile_clip_zscore",
    "resample_grid",
    "resample_labels_linear",
    "resample_separable",
    "resample_to_grid",
    "scale_intensity",
    "voxel_map",
    "zscore",
]
