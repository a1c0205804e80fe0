"""Inference: sliding window with Gaussian blending, mirroring, fold ensembles, back to the input grid."""

from medseg.inference.predictor import Predictor, argmax_labels, invert_to_labels, softmax_
from medseg.inference.sliding_window import sliding_window_inference
from medseg.inference.windows import axis_starts, importance_map, window_starts

__all__ = [
    "Predictor",
    "argmax_labels",
    "axis_starts",
    "importance_map",
    "invert_to_labels",
    "sliding_window_inference",
    "softmax_",
    "window_starts",
]
