"""Patch-size checks: fail before any compute when a network cannot take a patch size."""

from __future__ import annotations

from collections.abc import Sequence

from medseg.errors import ConfigError

AXES = "XYZ"


def nearest_valid(size: int, divisor: int) -> tuple[int, int]:
    """The multiples of ``divisor`` just below (at least ``divisor``) and just above ``size``."""
    lower = max(divisor, (size // divisor) * divisor)
    upper = -(-size // divisor) * divisor
    return lower, max(upper, divisor)


def check_divisible(patch_size: Sequence[int], divisor: Sequence[int], where: str) -> tuple[int, ...]:
    """Raise :class:`ConfigError` unless every ``patch_size[i]`` is a multiple of ``divisor[i]``.

    Args:
        patch_size: voxels per spatial axis (2 or 3 values).
        divisor: what each axis must be divisible by (product of the network's strides).
        where: the network's name, for the message.

    Returns:
        ``patch_size`` as a tuple of ints.
    """
    patch = tuple(int(p) for p in patch_size)
    div = tuple(int(d) for d in divisor)
    if len(patch) != len(div):
        raise ConfigError(
            f"{where}: patch_size {list(patch)} has {len(patch)} axes but the network is {len(div)}D; "
            f"give {len(div)} sizes"
        )
    problems = []
    for axis, (p, d) in enumerate(zip(patch, div)):
        if p <= 0 or p % d:
            lo, hi = nearest_valid(max(p, 1), d)
            valid = f"{lo} or {hi}" if lo != hi else f"{lo}"
            problems.append(f"axis {axis} ({AXES[axis]}) = {p} is not divisible by {d} (nearest valid: {valid})")
    if problems:
        suggestion = [nearest_valid(max(p, 1), d)[1] if p % d or p <= 0 else p for p, d in zip(patch, div)]
        raise ConfigError(
            f"{where}: patch_size {list(patch)} does not fit the network's downsampling: "
            + "; ".join(problems)
            + f"; e.g. use patch_size {suggestion}"
        )
    return patch
