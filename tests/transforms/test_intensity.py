from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.core import Volume
from medseg.errors import ConfigError, GeometryError, InputError
from medseg.transforms import Clip, PercentileClip, ScaleIntensity, ZScore
from medseg.transforms.functional.intensity import foreground_statistics


def test_clip_matches_numpy(make_volume):
    vol = make_volume(shape=(2, 10, 9, 8), dtype=np.int16)
    out = Clip(low=80, high=120)(vol)
    np.testing.assert_array_equal(out.numpy(), np.clip(vol.numpy(), 80, 120).astype(np.float32))
    assert out.numpy().dtype == np.float32 and out.history[-1].step == "clip"
    np.testing.assert_array_equal(Clip(high=90)(vol).numpy(), np.minimum(vol.numpy(), 90))


def test_scale_intensity_window(make_volume):
    vol = make_volume()
    out = ScaleIntensity(low=50, high=150)(vol).numpy()
    np.testing.assert_allclose(out, np.clip((vol.numpy() - 50) / 100, 0, 1), atol=1e-6)
    free = ScaleIntensity(low=50, high=150, out_low=-1, out_high=1, clip=False)(vol).numpy()
    np.testing.assert_allclose(free, (vol.numpy() - 50) / 50 - 1, atol=1e-5)


def test_zscore_whole_image(make_volume):
    vol = make_volume(shape=(2, 10, 9, 8))
    x = vol.numpy().astype(np.float64)
    ref = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / x.std(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(ZScore()(vol).numpy(), ref, atol=1e-5)


def test_zscore_nonzero_keeps_background(make_volume):
    vol = make_volume()
    x = vol.numpy().copy()
    x[:, :5] = 0
    out = ZScore(over="nonzero")(vol.replace(array=x)).numpy()
    nz = x != 0
    np.testing.assert_allclose(out[nz], (x[nz] - x[nz].mean()) / x[nz].std(), atol=1e-5)
    assert np.all(out[~nz] == 0)


def test_zscore_mask(make_volume):
    vol = make_volume()
    mask_arr = np.zeros((1, *vol.spatial_shape), dtype=np.uint8)
    mask_arr[0, 3:12, 2:9, 1:7] = 1
    mask = Volume(mask_arr, vol.affine, kind="label")
    out = ZScore(over="mask", mask=mask)(vol).numpy()
    inside = vol.numpy()[mask_arr.astype(bool)]
    np.testing.assert_allclose(out, (vol.numpy() - inside.mean()) / inside.std(), atol=1e-5)
    moved = mask.replace(affine=np.eye(4))
    with pytest.raises(GeometryError, match="zscore mask"):
        ZScore(over="mask", mask=moved)(vol)
    with pytest.raises(ConfigError, match="mask"):
        ZScore(over="mask")


def test_percentile_clip_nnunet_scheme():
    rng = np.random.default_rng(0)
    fg = torch.from_numpy(rng.normal(40, 30, 10000))
    stats = foreground_statistics(fg)
    np.testing.assert_allclose(stats["low"], np.percentile(fg.numpy(), 0.5))
    np.testing.assert_allclose(stats["high"], np.percentile(fg.numpy(), 99.5))
    step = PercentileClip(**stats)
    arr = rng.normal(0, 500, (1, 10, 10, 10)).astype(np.float32)
    out = step(Volume(arr, np.eye(4))).numpy()
    ref = (np.clip(arr, stats["low"], stats["high"]) - stats["mean"]) / stats["std"]
    np.testing.assert_allclose(out, ref, atol=1e-5)
    with pytest.raises(ConfigError, match="std"):
        PercentileClip(low=0, high=1, mean=0, std=0)


@pytest.mark.parametrize("step", [Clip(low=0), ScaleIntensity(low=0, high=1), ZScore(), PercentileClip(-1, 1, 0, 1)])
def test_intensity_steps_skip_labels_and_refuse_nan(make_volume, step):
    lab = make_volume(kind="label")
    assert step(lab) is lab
    vol = make_volume()
    bad = vol.numpy().copy()
    bad[0, 1, 1, 1] = np.nan
    with pytest.raises(InputError, match=r"ct\.nii\.gz.*NaN"):
        step(vol.replace(array=bad, meta={"source": "ct.nii.gz"}))


def test_window_checked():
    with pytest.raises(ConfigError, match="below"):
        Clip(low=5, high=1)
    with pytest.raises(ConfigError, match="low"):
        ScaleIntensity(low=float("nan"), high=1)
