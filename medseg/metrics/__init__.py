"""Segmentation metrics in physical units: overlap, surface distances, volumes; per case and summary."""

from medseg.metrics.evaluation import METRICS, evaluate_case, present_labels, summarize
from medseg.metrics.overlap import dice, iou, precision, recall, volume_difference
from medseg.metrics.surface import SurfaceDistances, assd, hausdorff95, surface_dice, surface_distances

__all__ = [
    "METRICS",
    "SurfaceDistances",
    "assd",
    "dice",
    "evaluate_case",
    "hausdorff95",
    "iou",
    "precision",
    "present_labels",
    "recall",
    "summarize",
    "surface_dice",
    "surface_distances",
    "volume_difference",
]
