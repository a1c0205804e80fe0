from __future__ import annotations

import math

import pytest
import torch

from medseg.errors import ConfigError
from medseg.transforms.augment import (
    Augment,
    adjust_gamma,
    affine_elastic,
    gaussian_blur,
    rotation_matrix,
    simulate_low_resolution,
)

ALL_ON = Augment(
    p_flip=0.5, p_rotate=1.0, p_scale=1.0, p_elastic=1.0, p_noise=1.0, p_blur=1.0,
    p_brightness=1.0, p_contrast=1.0, p_low_res=1.0, p_gamma=1.0,
)  # fmt: skip


def _batch(dims: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    shape = (2, 1, 16, 14, 12)[: 2 + dims]
    label = torch.zeros(shape, dtype=torch.uint8)
    sl = (slice(None), slice(None), *(slice(4, 10),) * dims)
    label[sl] = 2
    image = label.float() * 50 + torch.randn(shape)
    return image, label


@pytest.mark.parametrize("dims", [2, 3])
def test_seeded_reproducible_and_shapes(dims: int) -> None:
    image, label = _batch(dims)
    a = ALL_ON(image, label, torch.Generator().manual_seed(7))
    b = ALL_ON(image, label, torch.Generator().manual_seed(7))
    c = ALL_ON(image, label, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == image.shape and a[1].shape == label.shape and a[1].dtype == torch.uint8
    assert set(a[1].unique().tolist()) <= {0, 2}
    assert torch.isfinite(a[0]).all()


def test_spatial_moves_image_and_label_together() -> None:
    image, label = _batch(3)
    aug = Augment(p_flip=0.5, p_rotate=1.0, p_scale=1.0, p_elastic=1.0, p_noise=0, p_blur=0, p_brightness=0,
                  p_contrast=0, p_low_res=0, p_gamma=0)  # fmt: skip
    img, lab = aug(image, label, torch.Generator().manual_seed(3))
    inside = img[lab == 2]
    outside = img[(lab == 0)]
    assert inside.mean() > 40 and outside.abs().mean() < 10


def test_identity_matrix_is_identity_and_rotation_by_90_is_exact() -> None:
    image, label = _batch(3)
    out, lab = affine_elastic(image, label, torch.eye(3, dtype=torch.float64).repeat(2, 1, 1))
    assert torch.allclose(out, image, atol=1e-4) and torch.equal(lab, label)
    sq = torch.arange(36.0).view(1, 1, 6, 6)
    r = rotation_matrix(torch.tensor([math.pi / 2], dtype=torch.float64)).unsqueeze(0)
    rot, _ = affine_elastic(sq, None, r)
    assert torch.allclose(rot, torch.rot90(sq, 1, dims=(2, 3)), atol=1e-3) or torch.allclose(
        rot, torch.rot90(sq, -1, dims=(2, 3)), atol=1e-3
    )


def test_intensity_ops() -> None:
    x = torch.zeros(1, 1, 9, 9, 9)
    x[0, 0, 4, 4, 4] = 1.0
    blurred = gaussian_blur(x, 1.0)
    assert abs(float(blurred.sum()) - 1.0) < 1e-5 and float(blurred.max()) < 0.1
    ramp = torch.linspace(0, 10, 64).view(1, 1, 4, 4, 4)
    g = adjust_gamma(ramp, 2.0)
    assert float(g.min()) == 0.0 and abs(float(g.max()) - 10.0) < 1e-5 and float(g.mean()) < float(ramp.mean())
    assert simulate_low_resolution(ramp, 0.5).shape == ramp.shape


def test_invalid_probability() -> None:
    with pytest.raises(ConfigError, match="p_rotate"):
        Augment(p_rotate=1.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_same_result_on_gpu() -> None:
    image, label = _batch(3)
    a = ALL_ON(image, label, torch.Generator().manual_seed(5))
    b = ALL_ON(image.cuda(), label.cuda(), torch.Generator().manual_seed(5))
    assert torch.allclose(a[0], b[0].cpu(), atol=1e-3)
    assert (a[1] != b[1].cpu()).float().mean() < 0.01
