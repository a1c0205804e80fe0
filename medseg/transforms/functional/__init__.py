"""Pure functions on tensors ``(C, X, Y, Z)``: the work behind the steps, on any device."""

from medseg.transforms.functional.convert import as_float, as_tensor
from medseg.transforms.functional.croppad import crop, crop_or_pad, pad

__all__ = ["as_float", "as_tensor", "crop", "crop_or_pad", "pad"]
