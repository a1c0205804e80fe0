"""Surface meshes per label: marching cubes in world millimetres, STL/OBJ/PLY.

The surface is extracted in voxel index space (so oblique and anisotropic grids are
exact), then mapped through the affine to world mm. Coordinates are LPS by default
(what 3D Slicer writes and expects for STL/OBJ) or RAS; the files say which in
their header (STL header text, OBJ/PLY comment).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np

from medseg.core import geometry
from medseg.errors import ConfigError
from medseg.export.base import ExportCase, Exporter, register_exporter
from medseg.export.labels import label_color
from medseg.io import write_bytes_atomic

if TYPE_CHECKING:
    import trimesh

logger = logging.getLogger(__name__)

Coordinates = Literal["LPS", "RAS"]


def mask_mesh(
    mask: np.ndarray,
    affine: np.ndarray,
    *,
    coordinates: Coordinates = "LPS",
    smoothing: float = 1.0,
    decimate: float | None = None,
) -> trimesh.Trimesh:
    """Closed surface of a binary mask in world millimetres.

    Args:
        mask: ``(X, Y, Z)`` boolean mask.
        affine: 4×4 voxel → RAS mm affine.
        coordinates: ``"LPS"`` (3D Slicer's default for meshes) or ``"RAS"``.
        smoothing: Gaussian sigma in voxels applied to the mask before marching cubes
            (0 = none: the voxel staircase, area ~10% too large). With smoothing the
            iso-level is chosen so the mesh keeps the mask's voxel volume; sigma 1 gives
            volume and area within 1% of a sphere's (radius >= 10 voxels, spacing ratio <= 2).
        decimate: keep this fraction of the faces (0 < f < 1) with quadric decimation
            (needs the ``fast-simplification`` package), or None.

    Returns:
        A watertight mesh with outward normals (empty when the mask is empty).
    """
    import trimesh  # here, not at module level: trimesh takes ~0.4 s to import
    from scipy import ndimage
    from skimage.measure import marching_cubes

    if coordinates not in ("LPS", "RAS"):
        raise ConfigError(f"mesh coordinates {coordinates!r}; use 'LPS' or 'RAS'")
    if smoothing < 0:
        raise ConfigError(f"mesh smoothing {smoothing}: must be >= 0 (Gaussian sigma in voxels)")
    if decimate is not None and not 0.0 < decimate < 1.0:
        raise ConfigError(f"mesh decimate {decimate}: the fraction of faces to keep must be in (0, 1)")
    if not np.any(mask):
        return trimesh.Trimesh()
    pad = 1 + int(np.ceil(3 * smoothing))
    (x0, x1), (y0, y1), (z0, z1) = ((int(i.min()), int(i.max())) for i in np.nonzero(mask))
    crop = mask[x0 : x1 + 1, y0 : y1 + 1, z0 : z1 + 1]
    field = np.pad(crop.astype(np.float32), pad)
    level = 0.5
    if smoothing > 0:
        field = ndimage.gaussian_filter(field, smoothing, mode="constant")
        level = volume_preserving_level(field, float(np.count_nonzero(crop)))
    verts, faces, _, _ = marching_cubes(field, level=level)
    verts = verts - pad + np.array([x0, y0, z0], dtype=np.float64)
    ras = affine if coordinates == "RAS" else geometry.LPS_TO_RAS @ affine
    world = verts @ ras[:3, :3].T + ras[:3, 3]
    mesh = trimesh.Trimesh(world, faces[:, ::-1], process=True)
    if mesh.volume < 0:  # a left-handed affine flips the winding
        mesh.invert()
    if decimate is not None:
        mesh = _decimate(mesh, decimate)
    return mesh


def volume_preserving_level(field: np.ndarray, target_voxels: float) -> float:
    """Iso-level whose marching-cubes surface of ``field`` encloses ``target_voxels`` voxels.

    Gaussian smoothing shrinks convex shapes at level 0.5; choosing the level that keeps
    the mask's voxel volume removes that bias (also for objects thinner than the
    smoothing, whose peak stays below 0.5). Falls back to 0.5 (or half the peak) when
    no level between 5% and 98% of the peak matches.
    """
    import trimesh
    from scipy import optimize
    from skimage.measure import marching_cubes

    peak = float(field.max())

    def excess(level: float) -> float:
        verts, faces, _, _ = marching_cubes(field, level=level)
        return abs(float(trimesh.Trimesh(verts, faces, process=False).volume)) - target_voxels

    lo, hi = 0.05 * peak, min(0.95, 0.98 * peak)
    if hi <= lo or excess(lo) < 0 or excess(hi) > 0:
        return min(0.5, 0.5 * peak)
    return float(optimize.brentq(excess, lo, hi, xtol=1e-4))


def _decimate(mesh: trimesh.Trimesh, fraction: float) -> trimesh.Trimesh:
    try:
        import fast_simplification  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "mesh decimation needs the 'fast-simplification' package: pip install fast-simplification "
            "(or leave decimate unset)"
        ) from exc
    target = max(4, int(len(mesh.faces) * fraction))
    out = mesh.simplify_quadric_decimation(face_count=target)
    if out.volume < 0:
        out.invert()
    return out


def header_text(coordinates: Coordinates, name: str, value: int) -> str:
    """One-line description stored in the file: coordinate system, units and label."""
    return f"medseg mesh label {value} '{name}' SPACE={coordinates} units=mm"


@dataclass(frozen=True)
class MeshExporter(Exporter):
    """Base of the STL/OBJ/PLY exporters: one file ``CASE_NAME.EXT`` per label with voxels.

    Attributes:
        coordinates: world frame of the vertices, ``"LPS"`` (3D Slicer, ITK) or ``"RAS"`` (NIfTI).
        smoothing: Gaussian smoothing of the mask before marching cubes, voxels (0: none).
        decimate: keep this fraction of the triangles (0 < decimate < 1; None: all).
    """

    file_type: ClassVar[str] = ""
    coordinates: Coordinates = "LPS"
    smoothing: float = 1.0
    decimate: float | None = None

    def export(self, case: ExportCase) -> list[Path]:
        """Write one mesh file per present label (nothing for an empty mask)."""
        out = []
        for value in case.present:
            name = case.labels[value]
            mesh = mask_mesh(
                case.label_map == value,
                case.affine,
                coordinates=self.coordinates,
                smoothing=self.smoothing,
                decimate=self.decimate,
            )
            out.append(
                write_bytes_atomic(case.path(f"_{_stem(name)}.{self.file_type}"), self.encode(mesh, name, value))
            )
        if not out:
            logger.warning("%s: empty mask, no %s mesh written", case.case_id, self.file_type.upper())
        return out

    def encode(self, mesh: trimesh.Trimesh, name: str, value: int) -> bytes:
        """The file content of ``mesh`` with the coordinate system in its header."""
        text = header_text(self.coordinates, name, value)
        if self.file_type == "stl":
            stl = bytearray(file_bytes(mesh.export(file_type="stl")))
            stl[:80] = text.encode("ascii", "replace")[:80].ljust(80, b" ")
            return bytes(stl)
        if self.file_type == "obj":
            body = file_bytes(mesh.export(file_type="obj", include_normals=False, include_color=False))
            return f"# {text}\no {_stem(name)}\n".encode() + body
        import trimesh

        colored = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
        colored.visual.face_colors = np.tile([*label_color(value), 255], (len(mesh.faces), 1)).astype(np.uint8)  # type: ignore[union-attr]
        head, sep, rest = file_bytes(colored.export(file_type="ply", encoding="binary")).partition(b"\n")
        return head + sep + f"comment {text}\n".encode() + rest  # first line is "ply"


def file_bytes(data: object) -> bytes:
    """The bytes of what ``trimesh.Trimesh.export`` returned (text formats come as ``str``)."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raise TypeError(f"trimesh returned {type(data).__name__} instead of file content")


def _stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "label"


@register_exporter("stl")
@dataclass(frozen=True)
class StlExporter(MeshExporter):
    """Binary STL per label (``CASE_NAME.stl``); world mm, LPS by default (header says which).

    Options: see :class:`MeshExporter`.
    """

    name = "stl"
    file_type = "stl"


@register_exporter("obj")
@dataclass(frozen=True)
class ObjExporter(MeshExporter):
    """Wavefront OBJ per label (``CASE_NAME.obj``); world mm, LPS by default (comment says which).

    Options: see :class:`MeshExporter`.
    """

    name = "obj"
    file_type = "obj"


@register_exporter("ply")
@dataclass(frozen=True)
class PlyExporter(MeshExporter):
    """Binary PLY per label with the label colour (``CASE_NAME.ply``); LPS by default (comment says which).

    Options: see :class:`MeshExporter`.
    """

    name = "ply"
    file_type = "ply"
