"""Affine geometry helpers: spacing, direction, orientation codes, LPS↔RAS.

All affines are 4×4 float64 matrices mapping a voxel index ``(x, y, z, 1)`` to
world millimetres in RAS+ (the NIfTI convention). The one place where LPS (DICOM,
ITK, NRRD) is converted is :data:`LPS_TO_RAS` here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg.errors import GeometryError

#: Multiply an LPS affine on the left to get the RAS affine (and vice versa).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Two grids whose affines differ by at most this (mm) are the same grid: far below any voxel, far above
#: the float32 rounding of affines stored in NIfTI/NRRD headers. Every "same grid?" check uses it.
GRID_TOLERANCE_MM = 1e-3


def as_affine(affine: object) -> np.ndarray:
    """Return ``affine`` as a validated 4×4 float64 array.

    Raises:
        GeometryError: wrong shape, non-finite values, a singular 3×3 part, or a
            last row other than ``(0, 0, 0, 1)``.
    """
    a = np.array(affine, dtype=np.float64, copy=True)
    if a.shape != (4, 4):
        raise GeometryError(f"affine must be 4×4, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise GeometryError("affine contains NaN or Inf")
    if not np.allclose(a[3], [0, 0, 0, 1]):
        raise GeometryError(f"affine's last row must be (0, 0, 0, 1), got {a[3].tolist()}")
    if abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise GeometryError("affine is singular (a voxel axis has zero length or axes are parallel)")
    a.setflags(write=False)
    return a


def spacing(affine: np.ndarray) -> tuple[float, ...]:
    """Voxel size in mm along each array axis (column norms of the 3×3 part)."""
    return tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))


def direction(affine: np.ndarray) -> np.ndarray:
    """3×3 matrix whose columns are the unit world directions of the array axes."""
    return affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)


def orientation(affine: np.ndarray) -> str:
    """Axis codes such as ``"RAS"`` or ``"LPS"``: where each array axis points (nearest)."""
    from nibabel.orientations import aff2axcodes  # imported here: nibabel is slow to import

    return "".join(aff2axcodes(affine))


def is_sheared(affine: np.ndarray, tol: float = 1e-4) -> bool:
    """True when the array axes are not orthogonal in world space (e.g. gantry tilt)."""
    d = direction(affine)
    return bool(np.abs(d.T @ d - np.eye(3)).max() > tol)


def make_affine(
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    direction: np.ndarray | None = None,
) -> np.ndarray:
    """Build an affine from spacing (mm), origin (mm) and a 3×3 direction (columns = axes)."""
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
    a = np.eye(4)
    a[:3, :3] = d * np.asarray(spacing, dtype=np.float64)
    a[:3, 3] = origin
    return a


def grids_match(
    shape_a: Sequence[int],
    affine_a: np.ndarray,
    shape_b: Sequence[int],
    affine_b: np.ndarray,
    atol: float = GRID_TOLERANCE_MM,
) -> bool:
    """True when two grids have the same spatial shape and affines within ``atol`` mm."""
    return tuple(shape_a) == tuple(shape_b) and bool(np.allclose(affine_a, affine_b, atol=atol))


def grid_difference(shape_a: Sequence[int], affine_a: np.ndarray, shape_b: Sequence[int], affine_b: np.ndarray) -> str:
    """What differs between grid A and grid B, in words: shape, spacing (mm), origin (mm), direction (degrees).

    Only the properties that differ are named, e.g. ``"origin (0.0, 0.0, 0.0) vs (0.0, 0.0, 2.5) mm"``.
    """
    parts = []
    if tuple(shape_a) != tuple(shape_b):
        parts.append(f"shape {tuple(int(v) for v in shape_a)} vs {tuple(int(v) for v in shape_b)}")
    sp_a, sp_b = spacing(affine_a), spacing(affine_b)
    if not np.allclose(sp_a, sp_b, atol=GRID_TOLERANCE_MM):
        parts.append(f"spacing {_fmt(sp_a)} vs {_fmt(sp_b)} mm")
    if not np.allclose(affine_a[:3, 3], affine_b[:3, 3], atol=GRID_TOLERANCE_MM):
        parts.append(
            f"origin {_fmt(affine_a[:3, 3])} vs {_fmt(affine_b[:3, 3])} mm (RAS; "
            f"{float(np.linalg.norm(affine_a[:3, 3] - affine_b[:3, 3])):.4g} mm apart)"
        )
    cos = np.clip(np.sum(direction(affine_a) * direction(affine_b), axis=0), -1.0, 1.0)
    angle = float(np.degrees(np.arccos(cos)).max())
    if angle > 1e-3:
        parts.append(
            f"direction ({orientation(affine_a)} vs {orientation(affine_b)}; axes turned by up to {angle:.3g}°)"
        )
    if not parts:
        worst = float(np.abs(np.asarray(affine_a) - np.asarray(affine_b)).max())
        parts.append(f"affines differ by up to {worst:.4g} mm")
    return ", ".join(parts)


def _fmt(values: Sequence[float] | np.ndarray) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"
