"""Contour ↔ mask conversion: exact round trips, the inside rule, holes, islands, oblique mapping."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import polygon as sk_polygon

from medseg.io import contours
from medseg.io.contours import fill_polygons, polygon_area, to_patient, to_voxels, trace_polygons
from tests.conftest import AFFINES


def _star(rng: np.random.Generator, centre=6.0, r_max=8.0) -> np.ndarray:
    ang = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 15)))
    r = rng.uniform(1.0, r_max, len(ang))
    return np.stack([centre + r * np.cos(ang), centre + r * np.sin(ang)], axis=1)


@pytest.mark.parametrize("seed", range(4))
def test_trace_then_fill_gives_the_mask_back(seed):
    rng = np.random.default_rng(seed)
    for _ in range(80):
        shape = tuple(int(s) for s in rng.integers(1, 24, 2))
        mask = rng.random(shape) < rng.uniform(0.05, 0.95)  # islands, holes, saddles, border voxels
        polys = trace_polygons(mask)
        np.testing.assert_array_equal(fill_polygons(polys, shape), mask)
        # edges on voxel edges: every vertex is a voxel corner, and the areas add up to the voxel count
        for p in polys:
            np.testing.assert_array_equal(p - np.floor(p), 0.5)
        assert abs(sum(polygon_area(p) for p in polys)) == pytest.approx(mask.sum())


def test_single_voxel_is_a_unit_square_and_ring_has_a_hole():
    one = np.zeros((5, 5), bool)
    one[2, 3] = True
    (square,) = trace_polygons(one)
    assert sorted(map(tuple, square.tolist())) == [(1.5, 2.5), (1.5, 3.5), (2.5, 2.5), (2.5, 3.5)]
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False
    polys = trace_polygons(ring)
    assert len(polys) == 2
    assert sorted(abs(polygon_area(p)) for p in polys) == [1.0, 25.0]
    np.testing.assert_array_equal(fill_polygons(polys, ring.shape), ring)


def test_even_odd_nested_contours():
    outer = np.array([[0.5, 0.5], [10.5, 0.5], [10.5, 10.5], [0.5, 10.5]])
    hole = np.array([[2.5, 2.5], [8.5, 2.5], [8.5, 8.5], [2.5, 8.5]])
    island = np.array([[4.5, 4.5], [6.5, 4.5], [6.5, 6.5], [4.5, 6.5]])
    m = fill_polygons([outer, hole, island], (12, 12))
    expected = np.zeros((12, 12), bool)
    expected[1:11, 1:11] = True
    expected[3:9, 3:9] = False
    expected[5:7, 5:7] = True
    np.testing.assert_array_equal(m, expected)
    # order does not matter (XOR)
    np.testing.assert_array_equal(fill_polygons([island, outer, hole], (12, 12)), expected)


def test_centres_on_the_boundary_are_inside():
    """A contour drawn through voxel centres (as centre-tracing writers do) keeps its boundary voxels."""
    square = np.array([[2.0, 3.0], [6.0, 3.0], [6.0, 7.0], [2.0, 7.0]])
    expected = np.zeros((9, 9), bool)
    expected[2:7, 3:8] = True
    np.testing.assert_array_equal(fill_polygons([square], (9, 9)), expected)
    # coordinates rounded by a decimal string (within 0.01 voxel) give the same voxels
    jitter = square + np.array([[0.004, -0.003], [-0.006, 0.002], [0.003, 0.005], [-0.002, -0.004]])
    np.testing.assert_array_equal(fill_polygons([jitter], (9, 9)), expected)
    diamond = np.array([[4.0, 1.0], [7.0, 4.0], [4.0, 7.0], [1.0, 4.0]])  # slanted edges through centres
    m = fill_polygons([diamond], (9, 9))
    assert m[4, 1] and m[7, 4] and m[5, 2] and m[3, 2] and not m[2, 2]
    assert m.sum() == 25  # |i-4| + |j-4| <= 3


def test_matches_scikit_image_on_generic_polygons(monkeypatch):
    """Away from the on-edge tolerance and the sub-voxel rule, the fill equals skimage.draw.polygon."""
    monkeypatch.setattr(contours, "ON_EDGE", 0.0)
    rng = np.random.default_rng(7)
    compared = 0
    for _ in range(400):
        pts = _star(rng)
        ours = fill_polygons([pts], (13, 13))
        ref = np.zeros((13, 13), bool)
        rr, cc = sk_polygon(pts[:, 0], pts[:, 1], (13, 13))
        ref[rr, cc] = True
        if not ref.any():
            continue  # sub-voxel: ours keeps the nearest voxel, skimage nothing
        np.testing.assert_array_equal(ours, ref)
        compared += 1
    assert compared > 300


def test_sub_voxel_contour_keeps_its_voxel_and_outside_is_clipped():
    tiny = np.array([[3.1, 4.2], [3.3, 4.2], [3.2, 4.4]])
    m = fill_polygons([tiny], (8, 8))
    assert m.sum() == 1 and m[3, 4]
    # a polygon larger than the slice fills the whole slice; one entirely outside fills nothing
    big = np.array([[-5.0, -5.0], [20.0, -5.0], [20.0, 20.0], [-5.0, 20.0]])
    assert fill_polygons([big], (8, 8)).all()
    assert not fill_polygons([big + 100], (8, 8)).any()


def test_border_touching_mask():
    mask = np.zeros((6, 5), bool)
    mask[:, 0] = True
    mask[0, :] = True
    mask[5, 4] = True
    polys = trace_polygons(mask)
    assert min(p.min() for p in polys) == -0.5 and max(p[:, 0].max() for p in polys) == 5.5
    np.testing.assert_array_equal(fill_polygons(polys, mask.shape), mask)


@pytest.mark.parametrize("name", sorted(AFFINES))
def test_patient_voxel_mapping_is_exact_for_any_affine(name):
    affine = AFFINES[name]
    rng = np.random.default_rng(0)
    uvw = rng.uniform(-2, 30, (50, 3))
    lps = to_patient(uvw, affine)
    ras = uvw @ affine[:3, :3].T + affine[:3, 3]
    np.testing.assert_allclose(lps, ras * [-1, -1, 1], atol=1e-9)  # LPS = RAS with x, y negated
    np.testing.assert_allclose(to_voxels(lps, affine), uvw, atol=1e-9)


def test_organ_sized_round_trip_through_patient_coordinates():
    """A smooth organ with a hole and two islands on an oblique grid survives mask → mm → mask."""
    affine = AFFINES["oblique"]
    idx = np.indices((60, 50)).astype(float)
    organ = ((idx[0] - 30) / 20) ** 2 + ((idx[1] - 25) / 15) ** 2 <= 1
    organ &= ((idx[0] - 30) / 5) ** 2 + ((idx[1] - 25) / 4) ** 2 > 1  # a hole
    organ[2:4, 2:5] = True  # an island at the border
    organ[55, 45] = True  # a one-voxel island
    k = 7
    polys = trace_polygons(organ)
    mm = [to_patient(np.column_stack([p, np.full(len(p), k)]), affine) for p in polys]
    back = [to_voxels(p, affine) for p in mm]
    for b in back:
        np.testing.assert_allclose(b[:, 2], k, atol=1e-9)
    filled = fill_polygons([b[:, :2] for b in back], organ.shape)
    np.testing.assert_array_equal(filled, organ)
    assert ndimage.label(filled)[1] == 3
