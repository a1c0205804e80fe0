"""The same steps on a CUDA tensor give the CPU results and stay on the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.core import Grid
from medseg.transforms import (
    Clip,
    Crop,
    CropForeground,
    Pad,
    RandomPatches,
    Reorient,
    Resample,
    ResampleTo,
    ScaleIntensity,
    ZScore,
    invert,
)
from tests.conftest import oblique_affine

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

STEPS = [
    Reorient("LPS"),
    Resample(spacing=(1.3, 0.8, 1.9)),
    Resample(spacing=(0.7, 0.7, 1.1), mode="cubic"),
    Resample(spacing=(0.5, 0.5, 0.5), anisotropic=True),
    ResampleTo(Grid((9, 11, 8), oblique_affine() @ np.diag([1.7, 1.4, 1.8, 1.0]))),
    Crop(shape=(10, 10, 6)),
    CropForeground(threshold=100.0, margin_mm=2.0),
    Pad(multiple_of=16),
    Clip(low=80, high=120),
    ScaleIntensity(low=0, high=200),
    ZScore(over="nonzero"),
]


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.name)
@pytest.mark.parametrize("kind", ["intensity", "label"])
def test_step_on_cuda_matches_cpu(make_volume, step, kind):
    vol = make_volume(shape=(1, 20, 18, 12), affine="oblique", kind=kind)
    cpu = step(vol)
    gpu = step(vol.to("cuda"))
    assert gpu.device.startswith("cuda")
    np.testing.assert_array_equal(gpu.affine, cpu.affine)
    if kind == "label":
        assert (gpu.numpy() == cpu.numpy()).mean() > 0.999  # rounding ties may differ
    else:
        np.testing.assert_allclose(gpu.numpy(), cpu.numpy(), atol=1e-3, rtol=1e-4)
    back = invert(gpu, gpu.history)
    assert back.device.startswith("cuda") and back.grid.matches(vol.grid, atol=1e-9)


def test_patches_on_cuda(make_volume):
    image = make_volume(shape=(2, 30, 20, 10)).to("cuda")
    label = make_volume(shape=(1, 30, 20, 10), kind="label").to("cuda")
    for img, lab in RandomPatches((16, 16, 16)).sample(image, label, 3, np.random.default_rng(0)):
        assert img.is_cuda and lab.is_cuda and img.shape == (2, 16, 16, 16)
