"""Post-processing of label maps: connected components, hole filling, remapping, statistics.

Every step takes a label Volume ``(1, X, Y, Z)`` and returns one on the same grid; they
are registered (``stage="postprocess"``) under the names used in pipeline files.
"""

from medseg.postprocess.components import (
    KeepLargestComponent,
    RemoveSmallComponents,
    keep_largest_component,
    remove_small_components,
)
from medseg.postprocess.holes import FillHoles, fill_holes
from medseg.postprocess.remap import RemapLabels, remap_labels
from medseg.postprocess.statistics import LabelStatistics, label_statistics

__all__ = [
    "FillHoles",
    "KeepLargestComponent",
    "LabelStatistics",
    "RemapLabels",
    "RemoveSmallComponents",
    "fill_holes",
    "keep_largest_component",
    "label_statistics",
    "remap_labels",
    "remove_small_components",
]
