"""Invertible pre-processing steps and patching, on CPU or GPU tensors.

Every step is a frozen dataclass registered under a snake_case name (its YAML name);
calling it on a :class:`~medseg.core.Volume` returns a new Volume whose history holds
what :func:`invert` needs to bring a prediction back to the original grid::

    from medseg.transforms import Reorient, Resample, invert

    prep = Resample(spacing=(1.5, 1.5, 1.5))(Reorient("RAS")(image))
    ...                                   # predict on prep's grid
    back = invert(prediction, prep.history)  # on image.grid exactly
"""

from medseg.core.steps import build_step as build
from medseg.core.steps import invert
from medseg.transforms.croppad import Crop, CropForeground, Pad
from medseg.transforms.intensity import Clip, PercentileClip, ScaleIntensity, ZScore
from medseg.transforms.patches import RandomPatches
from medseg.transforms.percentiles import ScalePercentiles
from medseg.transforms.reorient import Reorient
from medseg.transforms.resample import Resample, ResampleTo

__all__ = [
    "Clip",
    "Crop",
    "CropForeground",
    "Pad",
    "PercentileClip",
    "RandomPatches",
    "Reorient",
    "Resample",
    "ResampleTo",
    "ScaleIntensity",
    "ScalePercentiles",
    "ZScore",
    "build",
    "invert",
]
