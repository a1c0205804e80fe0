from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.core import Volume, make_affine
from medseg.errors import ConfigError, InputError
from medseg.transforms import Crop, CropForeground, Pad, build, invert


def _world(vol: Volume, idx) -> np.ndarray:
    return vol.affine @ np.array([*idx, 1.0])


@pytest.mark.parametrize("affine", ["oblique", "lps"])
def test_crop_box_round_trip(make_volume, affine):
    vol = make_volume(shape=(1, 20, 18, 12), affine=affine)
    out = Crop(box=((2, 15), (3, 18), (0, 7)))(vol)
    assert out.spatial_shape == (13, 15, 7)
    np.testing.assert_allclose(_world(out, (0, 0, 0)), _world(vol, (2, 3, 0)))
    np.testing.assert_array_equal(out.numpy(), vol.numpy()[:, 2:15, 3:18, 0:7])
    back = invert(out, out.history)
    np.testing.assert_array_equal(back.affine, vol.affine)
    np.testing.assert_array_equal(back.numpy()[:, 2:15, 3:18, 0:7], vol.numpy()[:, 2:15, 3:18, 0:7])
    assert back.numpy()[:, :2].max() == 0


def test_crop_centre_shape(make_volume):
    vol = make_volume(shape=(1, 20, 18, 12))
    out = Crop(shape=(10, 9, 12))(vol)
    np.testing.assert_array_equal(out.numpy(), vol.numpy()[:, 5:15, 4:13, :])
    with pytest.raises(InputError, match="larger than the volume"):
        Crop(shape=(30, 9, 12))(vol)
    with pytest.raises(InputError, match="past the volume"):
        Crop(box=((0, 21), (0, 5), (0, 5)))(vol)


def test_crop_inverse_probability_background(make_volume):
    vol = make_volume(shape=(1, 10, 10, 10))
    out = Crop(box=((2, 8), (2, 8), (2, 8)))(vol)
    prob = torch.zeros((3, 6, 6, 6))
    prob[2] = 1.0
    back = invert(out.replace(array=prob, kind="probability"), out.history)
    b = back.numpy()
    assert b.shape == (3, 10, 10, 10)
    assert b[0, 0, 0, 0] == 1.0 and b[1:, 0, 0, 0].max() == 0.0
    assert b[2, 5, 5, 5] == 1.0 and b[0, 5, 5, 5] == 0.0


@pytest.mark.parametrize("affine", ["oblique", "lps"])
def test_pad_multiple_round_trip(make_volume, affine):
    vol = make_volume(shape=(1, 20, 18, 12), affine=affine)
    out = Pad(multiple_of=16, value=-5.0)(vol)
    assert out.spatial_shape == (32, 32, 16)
    # symmetric: 6 before on X, 7 on Y, 2 on Z; voxel (0,0,0) moved with the data
    np.testing.assert_allclose(_world(out, (6, 7, 2)), _world(vol, (0, 0, 0)), atol=1e-9)
    assert out.numpy()[0, 0, 0, 0] == -5.0
    back = invert(out, out.history)
    np.testing.assert_array_equal(back.numpy(), vol.numpy())
    np.testing.assert_array_equal(back.affine, vol.affine)


def test_pad_min_shape_and_labels(make_volume):
    lab = make_volume(shape=(1, 20, 18, 12), kind="label")
    out = Pad(min_shape=(24, 10, 13), value=9.0)(lab)
    assert out.spatial_shape == (24, 18, 13)
    assert out.numpy()[0, 0, 0, 0] == 0  # labels pad with background
    assert Pad(multiple_of=(8, 8, 1))(lab).spatial_shape == (24, 24, 12)


@pytest.mark.parametrize("bad", [{}, {"multiple_of": 0}, {"min_shape": (1, 2)}, {"multiple_of": 2.5}])
def test_pad_bad_options(bad):
    with pytest.raises(ConfigError, match="pad"):
        Pad(**bad)


def test_crop_foreground_threshold_and_margin():
    arr = np.full((1, 30, 20, 10), -1000.0, dtype=np.float32)
    arr[0, 10:15, 5:9, 3:6] = 50.0
    vol = Volume(arr, make_affine((0.5, 1.0, 2.0)))
    out = CropForeground(threshold=-500.0, margin_mm=2.0)(vol)
    # margin 2 mm = 4, 2, 1 voxels
    assert out.history[-1].state["box"] == [[6, 19], [3, 11], [2, 7]]
    back = invert(out, out.history)
    assert back.grid.matches(vol.grid, atol=0)
    np.testing.assert_array_equal(back.numpy()[:, 6:19, 3:11, 2:7], arr[:, 6:19, 3:11, 2:7])


def test_crop_foreground_nonzero_and_empty(make_volume):
    arr = np.zeros((1, 8, 8, 8), dtype=np.float32)
    vol = Volume(arr, np.eye(4))
    assert CropForeground()(vol).spatial_shape == (8, 8, 8)
    arr[0, 2, 3, 4] = 1
    assert CropForeground()(vol.replace(array=arr)).spatial_shape == (1, 1, 1)
    with pytest.raises(InputError, match="channel 1"):
        CropForeground(channel=1)(vol)
    with pytest.raises(ConfigError, match="margin_mm"):
        build("crop_foreground", margin_mm=-1)
