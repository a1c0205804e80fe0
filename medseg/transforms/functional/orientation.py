"""Exact reorientation of ``(C, X, Y, Z)`` tensors by axis permutation and flips."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from nibabel import orientations as ornt


def orientation_transform(affine: np.ndarray, axcodes: str) -> np.ndarray:
    """nibabel orientation transform (``(3, 2)``: target axis, flip) from ``affine``'s axes to ``axcodes``."""
    return ornt.ornt_transform(ornt.io_orientation(affine), ornt.axcodes2ornt(tuple(axcodes)))


def apply_orientation(x: torch.Tensor, transform: np.ndarray) -> torch.Tensor:
    """Permute and flip the spatial axes of ``x`` ``(C, X, Y, Z)`` by a nibabel orientation ``transform``.

    Row ``i`` of ``transform`` is ``(j, s)``: input axis ``i`` becomes output axis ``j``,
    reversed when ``s == -1``. No interpolation: values are moved, never changed.
    """
    t = np.asarray(transform)
    flips = [i + 1 for i in range(3) if t[i, 1] == -1]
    if flips:
        x = torch.flip(x, flips)
    order = np.argsort(t[:, 0].astype(int))  # output axis j takes input axis order[j]
    if list(order) != [0, 1, 2]:
        x = x.permute(0, *(int(i) + 1 for i in order))
    return x


def transform_affine(affine: np.ndarray, transform: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The affine after :func:`apply_orientation` of an array of spatial ``shape``."""
    return np.asarray(affine) @ ornt.inv_ornt_aff(transform, tuple(int(s) for s in shape))


def invert_transform(transform: np.ndarray) -> np.ndarray:
    """The orientation transform that undoes ``transform``."""
    t = np.asarray(transform)
    inv = np.zeros_like(t)
    for i, (j, s) in enumerate(t):
        inv[int(j)] = (i, s)
    return inv
