"""Array ↔ tensor conversion shared by the functional transforms."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from medseg.core.volume import ArrayLike

# numpy dtypes torch cannot hold (or only partly supports) → the nearest safe one.
_WIDEN = {np.dtype(np.uint16): np.int32, np.dtype(np.uint32): np.int64, np.dtype(np.uint64): np.int64}


def as_tensor(array: ArrayLike) -> torch.Tensor:
    """``array`` as a torch tensor, without a copy when possible.

    numpy arrays are wrapped on the CPU, keeping their memory layout (a Fortran-ordered
    NIfTI array stays Fortran-ordered: the resampling kernels follow the layout rather
    than transposing); negative strides are copied, unsigned 16/32/64-bit integers are
    widened to a signed type torch supports. Read-only arrays (memory maps) are shared
    without a copy; steps never write into their input. Tensors are returned as they are.
    """
    if isinstance(array, torch.Tensor):
        return array
    a = np.asarray(array)
    if a.dtype in _WIDEN:
        a = a.astype(_WIDEN[a.dtype])
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if any(st < 0 for st in a.strides):
        a = np.ascontiguousarray(a)
    if not a.flags.writeable:
        # read-only input (e.g. a memory-mapped cache): shared, never written — steps build new arrays
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
            return torch.from_numpy(a)
    return torch.from_numpy(a)


def as_float(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a floating tensor: float32 unless it already is float32/float64/float16."""
    return x if x.is_floating_point() else x.to(torch.float32)
