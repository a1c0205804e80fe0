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


#: A label map with more distinct values than this is taken for an image (a probability map stored as
#: 0-255, an intensity image) unless its labels are named; atlases with more labels name them.
MAX_UNNAMED_LABELS = 64


def present_values(labels: np.ndarray) -> np.ndarray:
    """The distinct values of an unsigned label array (from :func:`label_values`), sorted."""
    return np.flatnonzero(np.bincount(labels.ravel())) if labels.size else np.zeros(0, np.int64)


def check_not_image(
    labels: np.ndarray,
    source: object,
    *,
    named: object = None,
    fix: str = "give a label map (0 = background, 1, 2, ...)",
) -> None:
    """Refuse an unnamed "label map" with more than :data:`MAX_UNNAMED_LABELS` distinct values.

    Args:
        labels: an unsigned label array (from :func:`label_values`).
        source: the file it came from, named in the error.
        named: the label values that have names (any container); values above the limit are
            accepted only when every foreground value is named.
        fix: what the user can do, appended to the error.

    Raises:
        InputError: too many unnamed values — the file looks like a probability map or an image.
    """
    values = present_values(labels)
    values = values[values > 0]
    if len(values) <= MAX_UNNAMED_LABELS:
        return
    if named is not None and all(int(v) in named for v in values):  # type: ignore[operator]
        return
    raise InputError(
        f"{source}: holds {len(values)} distinct values ({int(values[0])}..{int(values[-1])}); it looks like a "
        f"probability map or an image, not a label map (more than {MAX_UNNAMED_LABELS} labels without names); {fix}"
    )
