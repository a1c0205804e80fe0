from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.core import Volume
from medseg.errors import ConfigError, GeometryError
from medseg.transforms import RandomPatches


@pytest.mark.parametrize("bad", [(0, 4, 4), (4, 4), (2.5, 4, 4)])
def test_patch_size_checked(bad):
    with pytest.raises(ConfigError, match="patch_size"):
        RandomPatches(bad)


def test_foreground_ratio_checked():
    with pytest.raises(ConfigError, match="foreground_ratio"):
        RandomPatches((4, 4, 4), foreground_ratio=1.5)


def _pair(shape=(40, 30, 20)):
    rng = np.random.default_rng(1)
    img = rng.normal(size=(1, *shape)).astype(np.float32)
    lab = np.zeros((1, *shape), dtype=np.uint8)
    lab[0, 30:33, 3:5, 15:17] = 1  # tiny class 1
    lab[0, 5:7, 25:28, 2:4] = 2  # tiny class 2
    aff = np.diag([0.8, 0.8, 2.0, 1.0])
    return Volume(img, aff), Volume(lab, aff, kind="label")


def test_random_patches_foreground_ratio_and_alignment():
    image, label = _pair()
    sampler = RandomPatches((8, 8, 8), foreground_ratio=0.33)
    assert sampler.n_foreground(3) == 1 and sampler.n_foreground(2) == 1 and sampler.n_foreground(9) == 3
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(30):
        batch = sampler.sample(image, label, 3, rng)
        for img, lab in batch:
            assert tuple(img.shape) == (1, 8, 8, 8) and tuple(lab.shape) == (1, 8, 8, 8)
        hits.append(bool((batch[-1][1] > 0).any()))
    assert all(hits)  # the forced patch always contains foreground
    # image and label patches come from the same place
    img, lab = sampler.sample(image, label, 1, np.random.default_rng(5))[0]
    [(x, y, z)] = np.argwhere(image.numpy()[0] == float(img[0, 0, 0, 0]))
    np.testing.assert_array_equal(img.numpy(), image.numpy()[:, x : x + 8, y : y + 8, z : z + 8])
    np.testing.assert_array_equal(lab.numpy(), label.numpy()[:, x : x + 8, y : y + 8, z : z + 8])


def test_random_patches_class_balanced():
    image, label = _pair()
    # class 1 has 12 voxels, class 2 has 12: make class 2 huge so unbalanced sampling favours it
    lab = label.numpy().copy()
    lab[0, 10:30, 10:25, 5:15] = 2
    label = label.replace(array=lab)
    rng = np.random.default_rng(0)
    balanced = RandomPatches((4, 4, 4), foreground_ratio=1.0, class_balanced=True)
    plain = RandomPatches((4, 4, 4), foreground_ratio=1.0)
    n1_bal = sum(bool((lab_p == 1).any()) for _, lab_p in balanced.sample(image, label, 200, rng))
    n1_plain = sum(bool((lab_p == 1).any()) for _, lab_p in plain.sample(image, label, 200, rng))
    assert 70 < n1_bal < 130
    assert n1_plain < 20


def test_random_patches_pad_outside():
    image, label = _pair(shape=(6, 30, 20))
    sampler = RandomPatches((10, 8, 8), foreground_ratio=0.0, pad_value=-5.0)
    for img, lab in sampler.sample(image, label, 10, np.random.default_rng(0)):
        # X is padded 2 voxels on each side (centred), with pad_value / 0
        assert torch.all(img[:, :2] == -5.0) and torch.all(img[:, 8:] == -5.0)
        assert torch.all(lab[:, :2] == 0)
        assert not torch.any(img[:, 2:8] == -5.0)


def test_random_patches_no_foreground_falls_back_to_random():
    image, label = _pair()
    label = label.replace(array=np.zeros_like(label.numpy()))
    out = RandomPatches((8, 8, 8), foreground_ratio=1.0).sample(image, label, 4, np.random.default_rng(0))
    assert len(out) == 4


def test_random_patches_requires_same_grid():
    image, label = _pair()
    moved = label.replace(affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(GeometryError, match="resample"):
        RandomPatches((8, 8, 8)).sample(image, moved, 2, np.random.default_rng(0))


def test_random_patches_from_read_only_memory_maps(tmp_path):
    image, label = _pair()
    np.save(tmp_path / "img.npy", image.numpy())
    np.save(tmp_path / "lab.npy", label.numpy())
    img_map = Volume(np.load(tmp_path / "img.npy", mmap_mode="r"), image.affine)
    lab_map = Volume(np.load(tmp_path / "lab.npy", mmap_mode="r"), label.affine, kind="label")
    sampler = RandomPatches((8, 8, 8))
    locations = sampler.class_locations(lab_map)
    assert sorted(locations) == [1, 2]
    out = sampler.sample(img_map, lab_map, 3, np.random.default_rng(0), locations=locations)
    assert bool((out[-1][1] > 0).any())
