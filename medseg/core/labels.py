"""What a label map may hold (one owner for training, evaluation and export): whole, non-negative numbers.

A label map stores class values ``0`` (background), ``1``, ``2``, ... in any numeric dtype; floats are
accepted when every value is whole (NIfTI files often store labels as float32).
"""

from __future__ import annotations

import numpy as np

from medseg.errors import InputError

#: Largest label value medseg stores (uint16 label maps).
MAX_LABEL = 65535


def label_values(
    values: np.ndarray, source: object, *, fix: str = "give a label map (0 = background, 1, 2, ...)"
) -> np.ndarray:
    """``values`` as an unsigned integer label array (uint8, or uint16 above 255), checked.

    Args:
        values: the label array (any shape).
        source: the file (or case) it came from, named in errors.
        fix: what the user can do, appended to errors.

    Raises:
        InputError: NaN/inf, fractional values (e.g. a probability map), negative values (e.g. an
            intensity image in HU), or values above 65535 — one line naming ``source``.
    """
    a = np.asarray(values)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            raise InputError(f"{source}: label map holds NaN or infinite values; {fix}")
        frac = a[a != np.round(a)]
        if frac.size:
            raise InputError(
                f"{source}: label map holds non-integer values (e.g. {float(frac.flat[0]):g}, {frac.size} voxels); "
                f"it looks like probabilities or an image, not labels; {fix}"
            )
    elif a.dtype.kind not in "iu":
        raise InputError(f"{source}: label map has dtype {a.dtype}; {fix}")
    lo = a.min() if a.size else 0
    if lo < 0:
        raise InputError(
            f"{source}: label map holds negative values (min {float(lo):g}); it looks like an intensity image "
            f"(e.g. CT in HU), not labels; {fix}"
        )
    hi = int(a.max()) if a.size else 0
    if hi > MAX_LABEL:
        raise InputError(f"{source}: label value {hi} exceeds {MAX_LABEL}; {fix}")
    return a.astype(np.uint8 if hi < 256 else np.uint16, copy=False)
