"""Post-processing steps: components, holes, remapping, statistics; registry contract."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medseg.core import STEPS, Volume, build_step, make_affine
from medseg.errors import ConfigError, InputError
from medseg.postprocess import (
    fill_holes,
    keep_largest_component,
    label_statistics,
    remap_labels,
    remove_small_components,
)

POSTPROCESS = ["keep_largest_component", "remove_small_components", "fill_holes", "remap_labels", "label_statistics"]


def scene() -> np.ndarray:
    a = np.zeros((30, 28, 20), np.uint8)
    a[2:12, 2:12, 2:12] = 1  # 1000 voxels
    a[20:23, 20:23, 2:4] = 1  # 18 voxels
    a[15:18, 2:5, 10:13] = 2  # 27 voxels
    a[22:24, 2:4, 15:17] = 2  # 8 voxels
    a[25, 25, 18] = 2  # 1 voxel, diagonal to nothing
    return a


def test_keep_largest_per_label_and_over_foreground() -> None:
    a = scene()
    out = keep_largest_component(a)
    assert np.count_nonzero(out == 1) == 1000 and np.count_nonzero(out == 2) == 27
    fg = keep_largest_component(a, per_label=False)
    assert set(np.unique(fg)) == {0, 1} and np.count_nonzero(fg) == 1000
    assert not keep_largest_component(np.zeros((4, 4, 4), np.uint8)).any()


def test_connectivity_matters() -> None:
    a = np.zeros((6, 6, 6), np.uint8)
    a[1, 1, 1] = a[2, 2, 2] = a[2, 2, 3] = 1  # corner-touching
    assert np.count_nonzero(keep_largest_component(a, connectivity=26)) == 3
    assert np.count_nonzero(keep_largest_component(a, connectivity=6)) == 2
    with pytest.raises(ConfigError, match="connectivity"):
        keep_largest_component(a, connectivity=8)


def test_keep_largest_matches_monai() -> None:
    from monai.transforms import KeepLargestConnectedComponent

    rng = np.random.default_rng(0)
    a = (ndimage.gaussian_filter(rng.random((30, 30, 30)), 1.5) > 0.52).astype(np.uint8)
    a[a.astype(bool) & (rng.random(a.shape) < 0.3)] = 2
    ref = KeepLargestConnectedComponent(applied_labels=[1, 2], independent=True, connectivity=3)(a[None])[0]
    np.testing.assert_array_equal(keep_largest_component(a), np.asarray(ref))


def test_remove_small_components_in_mm3() -> None:
    a = scene()
    aff = make_affine((2.0, 1.0, 1.0))  # 2 mm³ voxels
    vol = Volume(a[None], aff, kind="label")
    out = build_step("remove_small_components", min_size_mm3=20.0)(vol)  # < 10 voxels go
    arr = out.numpy()[0]
    assert np.count_nonzero(arr == 1) == 1018 and np.count_nonzero(arr == 2) == 27
    assert out.grid == vol.grid and out.history[-1].step == "remove_small_components"
    assert out.history[-1].state["removed_voxels"] == 9
    np.testing.assert_array_equal(remove_small_components(a, min_size_voxels=19), keep_largest_component(a))


def test_component_steps_restricted_to_labels() -> None:
    vol = Volume(scene()[None], make_affine((1.0, 1.0, 1.0)), kind="label")
    largest = build_step("keep_largest_component", labels=[1])(vol).numpy()[0]
    assert np.count_nonzero(largest == 1) == 1000  # label 1 cleaned
    np.testing.assert_array_equal(largest == 2, scene() == 2)  # label 2 untouched: 27 + 8 + 1 voxels
    small = build_step("remove_small_components", min_size_mm3=20.0, labels=[2])(vol).numpy()[0]
    np.testing.assert_array_equal(small == 1, scene() == 1)
    assert np.count_nonzero(small == 2) == 27
    fg = build_step("keep_largest_component", per_label=False, labels=[2])(vol).numpy()[0]
    assert np.count_nonzero(fg == 2) == 27 and np.count_nonzero(fg == 1) == 1018
    for bad in ([], [0, 1]):
        with pytest.raises(ConfigError, match="labels must be non-empty label values"):
            build_step("keep_largest_component", labels=bad)


def test_fill_holes_3d_and_2d() -> None:
    a = np.zeros((12, 12, 12), np.uint8)
    a[2:9, 2:9, 2:9] = 1
    a[4:7, 4:7, 4:7] = 0  # closed cavity
    a[5, 5, 5] = 2  # another label inside stays
    out = fill_holes(a)
    assert np.count_nonzero(out == 1) == 7**3 - 1 and out[5, 5, 5] == 2
    tube = np.zeros((12, 12, 12), np.uint8)
    tube[2:9, 2:9, :] = 1
    tube[4:7, 4:7, :] = 0  # open at both Z ends: no 3D hole, but a hole in every slice
    assert np.array_equal(fill_holes(tube, mode="3d"), tube)
    assert np.count_nonzero(fill_holes(tube, mode="2d")) == 49 * 12
    with pytest.raises(ConfigError, match="mode"):
        build_step("fill_holes", mode="4d")


def test_remap_labels() -> None:
    a = scene()
    out = remap_labels(a, {2: 7, 1: 0})
    assert set(np.unique(out)) == {0, 7} and out.dtype == np.uint8
    assert remap_labels(a, {1: 300}).dtype == np.uint16
    vol = build_step("remap_labels", mapping={"2": 5})(Volume(a[None], np.eye(4), kind="label"))
    assert set(np.unique(vol.numpy())) == {0, 1, 5}
    with pytest.raises(ConfigError, match="non-negative"):
        remap_labels(a, {1: -1})


def test_label_statistics_with_image(make_volume) -> None:
    a = scene()
    aff = make_affine((0.5, 1.0, 2.0), (10.0, 0.0, 0.0))
    img = np.random.default_rng(0).normal(40, 10, a.shape).astype(np.float32)
    stats = label_statistics(Volume(a[None], aff, kind="label"), Volume(img[None], aff), names={1: "liver"})
    assert [s["label"] for s in stats] == [1, 2]
    s1 = stats[0]
    assert s1["name"] == "liver" and stats[1]["name"] == "label_2"
    assert s1["voxels"] == 1018 and s1["volume_ml"] == pytest.approx(1018 * 1.0 / 1000)
    assert s1["bbox_min_voxel"] == [2, 2, 2] and s1["bbox_max_voxel"] == [22, 22, 11]
    assert s1["mean_intensity"] == pytest.approx(float(img[a == 1].mean()), rel=1e-6)
    assert s1["std_intensity"] == pytest.approx(float(img[a == 1].std()), rel=1e-4)
    assert s1["max_intensity"] == pytest.approx(float(img[a == 1].max()))
    centre = np.argwhere(a == 1).mean(axis=0)
    assert s1["centroid_ras_mm"] == pytest.approx((aff @ [*centre, 1.0])[:3].tolist(), abs=1e-3)
    vol = build_step("label_statistics", names={2: "spleen"})(Volume(a[None], aff, kind="label"))
    assert vol.meta["statistics"][1]["name"] == "spleen"


@pytest.mark.parametrize("name", POSTPROCESS)
def test_every_step_registered_keeps_grid_and_refuses_other_kinds(name: str, make_volume) -> None:
    cls = STEPS.get(name)
    assert cls.stage == "postprocess"
    vol = make_volume(kind="label", affine="oblique")
    out = build_step(name)(vol)
    assert out.grid == vol.grid and out.kind == "label" and out.array.shape == vol.array.shape
    with pytest.raises(InputError, match="kind 'intensity'"):
        build_step(name)(make_volume())
    two = Volume(np.zeros((2, 4, 4, 4), np.uint8), np.eye(4), kind="label")
    with pytest.raises(InputError, match="channels"):
        build_step(name)(two)
