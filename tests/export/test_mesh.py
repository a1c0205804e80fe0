"""Meshes: analytic sphere volume/area, world placement (oblique, LPS/RAS), file headers."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from medseg.core import Volume, make_affine
from medseg.errors import ConfigError
from medseg.export import EXPORTERS, mask_mesh
from tests.conftest import AFFINES

from .conftest import sphere_mask

ROTATION = Rotation.from_euler("xyz", [20.0, -10.0, 35.0], degrees=True).as_matrix()


def world(affine: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return idx @ affine[:3, :3].T + affine[:3, 3]


@pytest.mark.parametrize("spacing", [(0.7, 0.9, 1.3), (1.0, 0.8, 1.5)])
def test_sphere_volume_and_area_within_one_percent(spacing):
    radius = 12.0
    shape = tuple(int(np.ceil(2 * radius / s)) + 6 for s in spacing)
    center = [(n / 2 - 0.3) * s for n, s in zip(shape, spacing)]
    mask = sphere_mask(shape, spacing, center, radius)
    affine = make_affine(spacing, (10.0, -20.0, 5.0), ROTATION)
    mesh = mask_mesh(mask, affine, coordinates="RAS")
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.01)
    assert mesh.area == pytest.approx(4 * np.pi * radius**2, rel=0.01)
    # the staircase surface (no smoothing) overestimates the area by ~10%
    assert mask_mesh(mask, affine, smoothing=0).area > 1.05 * 4 * np.pi * radius**2


def test_mesh_lies_where_the_mask_lies():
    spacing = (0.9, 1.1, 2.5)
    mask = np.zeros((40, 36, 20), bool)
    mask[8:30, 10:20, 4:12] = True  # a box ...
    mask |= sphere_mask(mask.shape, spacing, (20.0, 30.0, 30.0), 7.0)  # ... and a ball touching it
    affine = make_affine(spacing, (-40.0, 12.0, 7.0), ROTATION)
    idx = np.argwhere(mask).astype(float)
    centroid = world(affine, idx).mean(axis=0)
    surface = world(affine, np.argwhere(mask & ~ndimage.binary_erosion(mask)).astype(float))
    tree = cKDTree(surface)
    for smoothing in (0.0, 1.0):
        mesh = mask_mesh(mask, affine, coordinates="RAS", smoothing=smoothing)
        dist, _ = tree.query(mesh.vertices)
        assert dist.max() < max(spacing), f"vertex {dist.max():.2f} mm from the mask surface"
        np.testing.assert_allclose(mesh.center_mass, centroid, atol=0.15)
    assert mesh.volume == pytest.approx(mask.sum() * np.prod(spacing), rel=0.01)


def test_lps_is_ras_with_x_and_y_negated():
    mask = sphere_mask((20, 20, 10), (1, 1, 2), (10.2, 9.7, 10.1), 6.0)
    ras = mask_mesh(mask, AFFINES["oblique"], coordinates="RAS")
    lps = mask_mesh(mask, AFFINES["oblique"], coordinates="LPS")
    np.testing.assert_allclose(lps.vertices, ras.vertices * [-1, -1, 1], atol=1e-9)
    assert lps.volume > 0 and ras.volume > 0


def test_left_handed_affine_keeps_outward_normals():
    mask = sphere_mask((20, 20, 10), (0.8, 0.8, 2.0), (8.0, 8.0, 10.0), 5.0)
    mesh = mask_mesh(mask, AFFINES["lps"])  # det < 0
    assert mesh.is_watertight and mesh.volume > 0
    assert mesh.is_winding_consistent


@pytest.mark.parametrize("fmt", ["stl", "obj", "ply"])
@pytest.mark.parametrize("coordinates", ["LPS", "RAS"])
def test_files_say_their_coordinate_system_and_reload(fmt, coordinates, phantom, tmp_path):
    _, label = phantom
    paths = EXPORTERS.build(fmt, coordinates=coordinates)(label, tmp_path, "c", labels={1: "liver"})
    assert [p.name for p in paths] == [f"c_{n}.{fmt}" for n in ("liver", "label_2", "label_3", "label_4")]
    data = paths[0].read_bytes()
    assert f"SPACE={coordinates}".encode() in data[:200]
    assert b"units=mm" in data[:200]
    if fmt == "obj":
        assert data.startswith(b"# medseg mesh label 1 'liver'")
    if fmt == "ply":
        assert data.split(b"\n")[1].startswith(b"comment medseg mesh")
    loaded = trimesh.load(paths[0], file_type=fmt, force="mesh")
    expected = mask_mesh(label.numpy()[0] == 1, label.affine, coordinates=coordinates)
    assert loaded.volume == pytest.approx(expected.volume, rel=1e-4)
    np.testing.assert_allclose(loaded.bounds, expected.bounds, atol=1e-3)


def test_ply_carries_the_label_colour(phantom, tmp_path):
    _, label = phantom
    paths = EXPORTERS.build("ply")(label, tmp_path, "c")
    loaded = trimesh.load(paths[1], force="mesh")
    from medseg.export import label_color

    np.testing.assert_array_equal(loaded.visual.face_colors[0, :3], label_color(2))


def test_decimation_keeps_shape():
    fast_simplification = pytest.importorskip("fast_simplification", reason="pip install fast-simplification")
    assert fast_simplification
    mask = sphere_mask((40, 40, 40), (1, 1, 1), (20.0, 20.0, 20.0), 14.0)
    full = mask_mesh(mask, np.eye(4))
    half = mask_mesh(mask, np.eye(4), decimate=0.25)
    assert len(half.faces) <= 0.3 * len(full.faces)
    assert half.volume == pytest.approx(full.volume, rel=0.02)


def test_bad_options_raise():
    mask = np.ones((3, 3, 3), bool)
    with pytest.raises(ConfigError, match="coordinates"):
        mask_mesh(mask, np.eye(4), coordinates="XYZ")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="decimate"):
        mask_mesh(mask, np.eye(4), decimate=1.5)
    with pytest.raises(ConfigError, match="smoothing"):
        mask_mesh(mask, np.eye(4), smoothing=-1)


def test_single_voxel_and_empty_masks():
    one = np.zeros((5, 5, 5), bool)
    one[2, 2, 2] = True
    mesh = mask_mesh(one, np.eye(4))
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(1.0, rel=0.01)
    assert len(mask_mesh(np.zeros((4, 4, 4), bool), np.eye(4)).faces) == 0


def test_mesh_from_volume_label(tmp_path):
    arr = np.zeros((1, 30, 30, 30), np.uint8)
    arr[0][sphere_mask((30, 30, 30), (1, 1, 1), (15.0, 15.0, 15.0), 10.0)] = 5
    vol = Volume(arr, make_affine((1, 1, 1), (0, 0, 0)), kind="label")
    (path,) = EXPORTERS.build("stl", coordinates="RAS")(vol, tmp_path, "ball", labels={5: "tumour"})
    mesh = trimesh.load(path)
    np.testing.assert_allclose(mesh.center_mass, [15, 15, 15], atol=0.05)
