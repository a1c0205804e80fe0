"""The :class:`Volume`: an image or label map with its exact world geometry."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np

from medseg.core import geometry
from medseg.errors import GeometryError, InputError

if TYPE_CHECKING:
    import torch

Kind = Literal["intensity", "label", "probability"]
ArrayLike = Union[np.ndarray, "torch.Tensor"]
KINDS: tuple[str, ...] = ("intensity", "label", "probability")


def is_tensor(obj: object) -> bool:
    """True for a ``torch.Tensor``, without importing torch (a tensor exists only once torch is imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


@dataclass(frozen=True)
class HistoryEntry:
    """One applied step, holding exactly the state its inverse needs.

    Attributes:
        step: registered name of the step (e.g. ``"resample"``).
        state: what the inverse needs, typically the grid before the step
            (``"shape"``, ``"affine"``) plus step-specific values (crop box, padding).
            Values are plain Python/numpy objects so history can be saved as JSON.
    """

    step: str
    state: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Grid:
    """A spatial grid: ``shape`` (X, Y, Z) voxels and a 4×4 voxel→RAS-mm ``affine``."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def matches(self, other: Grid, atol: float = geometry.GRID_TOLERANCE_MM) -> bool:
        """Same shape and affines equal within ``atol`` mm."""
        return geometry.grids_match(self.shape, self.affine, other.shape, other.affine, atol)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grid) and self.matches(other, atol=0.0)

    def __hash__(self) -> int:
        return hash((self.shape, self.affine.tobytes()))


@dataclass(frozen=True, eq=False)
class Volume:
    """An immutable image record: array + affine + kind + meta + history.

    Attributes:
        array: channel-first ``(C, X, Y, Z)`` numpy array or torch tensor (any device).
            2D images are volumes with ``Z == 1``.
        affine: 4×4 float64, voxel index → world millimetres, RAS+ (as in NIfTI).
        kind: ``"intensity"``, ``"label"`` (integer classes) or ``"probability"``;
            decides interpolation (labels: nearest; others: linear or better).
        meta: free-form information about the source (path, DICOM UIDs, modality).
        history: the steps applied since reading, oldest first; see
            :func:`medseg.transforms.invert`.

    Steps never modify ``array`` in place; they return a new Volume via :meth:`replace`.
    """

    array: ArrayLike
    affine: np.ndarray
    kind: Kind = "intensity"
    meta: Mapping[str, Any] = field(default_factory=dict)
    history: tuple[HistoryEntry, ...] = ()

    def __post_init__(self) -> None:
        arr = self.array
        if not (isinstance(arr, np.ndarray) or is_tensor(arr)):
            raise InputError(f"Volume.array must be a numpy array or torch tensor, got {type(arr).__name__}")
        if arr.ndim != 4:
            raise InputError(
                f"Volume.array must be channel-first (C, X, Y, Z), got {arr.ndim} dimensions "
                f"with shape {tuple(arr.shape)}; add axes (e.g. array[None] or array[..., None])"
            )
        if min(arr.shape) == 0:
            raise InputError(f"Volume.array has a zero-sized axis: shape {tuple(arr.shape)}")
        if self.kind not in KINDS:
            raise InputError(f"Volume.kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "affine", geometry.as_affine(self.affine))
        object.__setattr__(self, "history", tuple(self.history))
        object.__setattr__(self, "meta", dict(self.meta))

    # ---- derived geometry -------------------------------------------------
    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """``(X, Y, Z)`` in voxels."""
        return tuple(int(s) for s in self.array.shape[1:])  # type: ignore[return-value]

    @property
    def n_channels(self) -> int:
        """Number of channels ``C``."""
        return int(self.array.shape[0])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the array axes ``(X, Y, Z)``."""
        return geometry.spacing(self.affine)  # type: ignore[return-value]

    @property
    def origin(self) -> tuple[float, float, float]:
        """World position (RAS mm) of the centre of voxel ``(0, 0, 0)``."""
        return tuple(float(v) for v in self.affine[:3, 3])  # type: ignore[return-value]

    @property
    def direction(self) -> np.ndarray:
        """3×3 matrix; column ``i`` is the unit RAS direction of array axis ``i``."""
        return geometry.direction(self.affine)

    @property
    def orientation(self) -> str:
        """Axis codes such as ``"RAS"``, ``"LPS"`` (nearest world axis of each array axis)."""
        return geometry.orientation(self.affine)

    @property
    def grid(self) -> Grid:
        """The spatial grid (shape and affine) this volume lives on."""
        return Grid(self.spatial_shape, self.affine)

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm³ (|det| of the 3×3 part)."""
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    @property
    def device(self) -> str:
        """``"cpu"`` for numpy arrays, else the tensor's device as a string."""
        return str(self.array.device) if is_tensor(self.array) else "cpu"

    # ---- conversions --------------------------------------------------------
    def replace(self, **changes: Any) -> Volume:
        """A copy with some fields replaced (``array``, ``affine``, ``kind``, ``meta``, ``history``)."""
        return dataclasses.replace(self, **changes)

    def with_step(self, array: ArrayLike, affine: np.ndarray | None, entry: HistoryEntry, **changes: Any) -> Volume:
        """A copy with a new array (and affine, if spatial) and ``entry`` appended to history."""
        affine = self.affine if affine is None else affine
        return dataclasses.replace(self, array=array, affine=affine, history=(*self.history, entry), **changes)

    def numpy(self) -> np.ndarray:
        """The array as a numpy array (copied from the device when it is a tensor)."""
        if is_tensor(self.array):
            return self.array.detach().cpu().numpy()
        return self.array

    def tensor(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The array as a torch tensor on ``device`` (no copy when already there)."""
        arr = self.array
        t = arr if is_tensor(arr) else _as_tensor(arr)
        return t.to(device=device if device is not None else t.device, dtype=dtype or t.dtype)

    def to(self, device: str | torch.device) -> Volume:
        """A copy whose array is a tensor on ``device``."""
        return self.replace(array=self.tensor(device))

    def require_grid(self, other: Volume, what: str = "volume", fix: str | None = None) -> None:
        """Raise :class:`GeometryError` unless ``other`` lies on this volume's grid.

        Args:
            other: the volume that must share this grid.
            what: what ``other`` is, for the message (``"label"``, ``"channel 1"``, ...).
            fix: what the user can do, where they are (default: resample it onto this grid).
        """
        if not self.grid.matches(other.grid):
            src = self.meta.get("source") or "image"
            diff = geometry.grid_difference(other.spatial_shape, other.affine, self.spatial_shape, self.affine)
            raise GeometryError(
                f"{other.meta.get('source') or what}: {what} is not on the grid of {src}: {diff}; "
                + (fix or f"resample the {what} onto the image first (e.g. with SimpleITK or the resample_to step)")
            )

    def __repr__(self) -> str:
        arr = self.array
        return (
            f"Volume(shape={tuple(arr.shape)}, dtype={arr.dtype}, kind={self.kind!r}, "
            f"spacing={tuple(round(s, 4) for s in self.spacing)}, orientation={self.orientation!r}, "
            f"device={self.device!r}, history={[h.step for h in self.history]})"
        )


def _as_tensor(arr: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``arr``'s memory when torch can (writable, non-negative strides), else a copy."""
    import torch

    if arr.flags.writeable and all(st >= 0 for st in arr.strides):
        return torch.from_numpy(arr)
    return torch.from_numpy(np.array(arr, order="K", copy=True))
