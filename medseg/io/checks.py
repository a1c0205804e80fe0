"""Checks shared by the readers: data sanity and allocation limits."""

from __future__ import annotations

import os
import warnings

import numpy as np

from medseg.errors import InputError, InputWarning

#: Largest decoded image medseg will allocate, in bytes (override with MEDSEG_MAX_IMAGE_BYTES).
MAX_IMAGE_BYTES = int(os.environ.get("MEDSEG_MAX_IMAGE_BYTES", str(16 * 1024**3)))


def check_allocation(path: object, shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse to decode an image whose header promises more than :data:`MAX_IMAGE_BYTES`."""
    if any(int(s) <= 0 for s in shape):
        raise InputError(
            f"{path}: image has a zero-sized dimension, shape {tuple(shape)}; the file is empty or its header is wrong"
        )
    n = int(np.prod([int(s) for s in shape], dtype=object)) * int(itemsize)
    if n > MAX_IMAGE_BYTES:
        raise InputError(
            f"{path}: header claims shape {tuple(shape)} ({n / 1024**3:.1f} GiB), above the "
            f"{MAX_IMAGE_BYTES / 1024**3:.0f} GiB limit; the header is probably corrupt "
            "(raise MEDSEG_MAX_IMAGE_BYTES if the image is really that large)"
        )


def check_values(path: object, array: np.ndarray) -> None:
    """Reject non-numeric data; warn (:class:`InputWarning`) about NaN/Inf voxels."""
    if array.dtype.kind not in "biuf":
        raise InputError(f"{path}: voxel type {array.dtype} is not numeric; convert the image to integers or floats")
    if array.dtype.kind == "f":
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            warnings.warn(
                f"{path}: {bad} voxels are NaN or Inf; intensity steps will refuse them unless "
                "replaced (e.g. clip or nan_to_num before normalising)",
                InputWarning,
                stacklevel=3,
            )
