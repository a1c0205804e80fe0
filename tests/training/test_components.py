from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError
from medseg.training import PatchStream, SegmentationLoss, load_dataset, prepare_dataset
from medseg.training.loader import make_loader
from medseg.training.losses import LOSSES
from medseg.training.optim import build_optimizer, lr_factor


@pytest.fixture
def cases(nnunet_dataset: Path, tmp_path: Path):
    return prepare_dataset(load_dataset(nnunet_dataset), None, tmp_path / "cache")


def test_patch_stream_foreground_oversampling_and_seeds(cases) -> None:
    stream = PatchStream(cases, (8, 8, 8), 3, foreground_ratio=0.33, seed=4)
    rng = np.random.default_rng(0)
    for _ in range(10):
        x, y = stream.batch(rng)
        assert x.shape == (3, 1, 8, 8, 8) and x.dtype == torch.float32 and y.shape == (3, 1, 8, 8, 8)
        assert int(y[-1, 0, 4, 4, 4]) > 0  # the last element is centred on a foreground voxel
    a = next(iter(PatchStream(cases, (8, 8, 8), 2, seed=1)))
    b = next(iter(PatchStream(cases, (8, 8, 8), 2, seed=1)))
    c = next(iter(PatchStream(cases, (8, 8, 8), 2, seed=2)))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_loader_workers_and_2d_patches(cases) -> None:
    stream = PatchStream(cases, (16, 12), 2, seed=0)
    x, y = next(iter(make_loader(stream, num_workers=1, pin_memory=False)))
    assert x.shape == (2, 1, 16, 12) and y.shape == (2, 1, 16, 12)


@pytest.mark.parametrize("name", LOSSES)
def test_losses_with_deep_supervision(name: str) -> None:
    loss = SegmentationLoss(name)
    target = torch.zeros(2, 1, 8, 8, 8, dtype=torch.uint8)
    target[:, :, 2:6, 2:6, 2:6] = 1
    logits = [torch.randn(2, 2, 8, 8, 8, requires_grad=True), torch.randn(2, 2, 4, 4, 4, requires_grad=True)]
    value = loss(logits, target)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value) and logits[1].grad is not None
    perfect = torch.cat([(target == 0).float(), (target == 1).float()], 1) * 20 - 10
    assert float(loss(perfect, target)) < float(loss(logits[0].detach(), target))


def test_unknown_loss() -> None:
    with pytest.raises(ConfigError, match="did you mean 'dice_ce'"):
        SegmentationLoss("dice_cee")


def test_poly_and_cosine_schedules() -> None:
    p = [torch.nn.Parameter(torch.zeros(1))]
    opt = build_optimizer("sgd", p, lr=0.01, weight_decay=0.0)
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.99
    assert lr_factor("poly", 0.0) == 1.0 and lr_factor("poly", 0.5) == pytest.approx(0.5**0.9)
    assert lr_factor("poly", 1.0) == 0.0 and lr_factor("poly", 1.7) == 0.0
    assert lr_factor("cosine", 0.5) == pytest.approx(0.5) and lr_factor("cosine", 1.0) == pytest.approx(0.0)
    assert lr_factor("constant", 0.9) == 1.0
    with pytest.raises(ConfigError, match="did you mean 'cosine'"):
        lr_factor("cosin", 0.1)
    with pytest.raises(ConfigError, match="did you mean 'adamw'"):
        build_optimizer("adamv", p, lr=1.0, weight_decay=0.0)


def test_loader_workers_augment_on_cpu(cases) -> None:
    from medseg.transforms.augment import Augment

    aug = Augment(p_rotate=1.0, p_flip=0.0, p_scale=0.0, p_noise=0.0, p_blur=0.0, p_brightness=0.0, p_contrast=0.0,
                  p_low_res=0.0, p_gamma=0.0)  # fmt: skip
    plain = next(iter(PatchStream(cases, (16, 16, 16), 2, seed=3)))
    runs = [next(iter(make_loader(PatchStream(cases, (16, 16, 16), 2, seed=3, augment=aug), 1, False))) for _ in "ab"]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], plain[0]) and runs[0][1].dtype == plain[1].dtype


def test_validation_dice_and_evaluation_dice_agree_on_empty_masks() -> None:
    """One convention: a class absent from both prediction and reference scores 1 in both places."""
    from medseg.metrics import dice
    from medseg.training.validation import per_class_dice

    pred = torch.zeros(6, 6, 4, dtype=torch.long)
    ref = torch.zeros(6, 6, 4, dtype=torch.long)
    pred[1:3, 1:3, 1:3] = 1
    ref[1:4, 1:3, 1:3] = 1
    got = per_class_dice(pred, ref, [1, 2])
    assert got[1] == pytest.approx(dice(pred.numpy(), ref.numpy(), label=1))
    assert got[2] == dice(pred.numpy(), ref.numpy(), label=2) == 1.0


@pytest.mark.parametrize(("offset_mm", "accepted"), [(5e-4, True), (5e-3, False)])
def test_training_and_prediction_accept_the_same_channel_grids(tmp_path, offset_mm: float, accepted: bool) -> None:
    import numpy as np

    from medseg.core import Volume
    from medseg.errors import GeometryError
    from medseg.io import read_channels, write
    from medseg.training.cache import read_case
    from medseg.training.dataset import TrainingCase

    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    shifted = affine.copy()
    shifted[0, 3] += offset_mm
    write(Volume(np.zeros((1, 4, 4, 3), np.float32), affine), tmp_path / "c_0000.nii.gz")
    write(Volume(np.ones((1, 4, 4, 3), np.float32), shifted), tmp_path / "c_0001.nii.gz")
    paths = [tmp_path / "c_0000.nii.gz", tmp_path / "c_0001.nii.gz"]
    outcomes = []
    for load in (lambda: read_channels(paths), lambda: read_case(TrainingCase("c", paths))):
        try:
            load()
            outcomes.append(True)
        except GeometryError:
            outcomes.append(False)
    assert outcomes == [accepted, accepted]
