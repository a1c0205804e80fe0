"""Inference: sliding window with Gaussian blending, mirroring, fold ensembles, back to the input grid."""

from medseg.inference.sliding_window import sliding_window_inference
from medseg.inference.windows import axis_starts, importance_map, window_starts

__all__ = ["axis_starts", "importance_map", "sliding_window_inference", "window_starts"]
