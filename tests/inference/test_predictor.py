"""Predictor: output on the input grid exactly, with identity, a test crop step and real transforms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from medseg.core import HistoryEntry, Step, Volume, register_step
from medseg.errors import ConfigError
from medseg.inference import Predictor
from medseg.postprocess import KeepLargestComponent


@register_step("test_crop_for_predictor")
@dataclass(frozen=True)
class CropForTest(Step):
    """Crop ``margin`` voxels from every side; the inverse pads (probabilities: background)."""

    margin: int = 2

    def __call__(self, volume: Volume) -> Volume:
        m = self.margin
        arr = volume.tensor()[:, m:-m, m:-m, m:-m]
        affine = volume.affine.copy()
        affine[:3, 3] = (volume.affine @ [m, m, m, 1.0])[:3]
        entry = self.entry(
            shape=list(volume.spatial_shape), affine=volume.affine.tolist(), margin=m, out_shape=list(arr.shape[1:])
        )
        return volume.with_step(arr, affine, entry)

    @classmethod
    def inverse(cls, volume: Volume, entry: HistoryEntry) -> Volume:
        m = entry.state["margin"]
        x = volume.tensor()
        out = torch.zeros((x.shape[0], *entry.state["shape"]), dtype=x.dtype)
        if volume.kind == "probability":
            out[0] = 1.0
        out[:, m:-m, m:-m, m:-m] = x
        return volume.replace(array=out, affine=np.array(entry.state["affine"]))


def threshold_net(threshold: float = 100.0) -> nn.Module:
    """1×1×1 conv: class 1 where intensity > threshold."""
    net = nn.Conv3d(1, 2, 1)
    with torch.no_grad():
        net.weight.zero_()
        net.weight[1, 0] = 0.1
        net.bias.copy_(torch.tensor([0.0, -0.1 * threshold]))
    return net


def test_identity_output_on_input_grid(make_volume) -> None:
    vol = make_volume(shape=(1, 20, 18, 12), affine="oblique")
    out = Predictor(threshold_net(), patch_size=(8, 8, 8), device="cpu", precision="float32").predict(vol)
    assert out.kind == "label" and out.array.dtype == np.uint8 and out.array.shape == (1, 20, 18, 12)
    assert np.array_equal(out.affine, vol.affine)
    np.testing.assert_array_equal(out.numpy(), (vol.numpy() > 100).astype(np.uint8))


def test_crop_step_is_inverted(make_volume) -> None:
    vol = make_volume(shape=(1, 16, 14, 12), affine="lps")
    out = Predictor(
        threshold_net(), preprocess=[CropForTest(2)], patch_size=(6, 6, 6), device="cpu", precision="float32"
    ).predict(vol)
    assert out.grid == vol.grid and out.history == ()
    expected = (vol.numpy() > 100).astype(np.uint8)
    np.testing.assert_array_equal(out.numpy()[:, 2:-2, 2:-2, 2:-2], expected[:, 2:-2, 2:-2, 2:-2])
    assert out.numpy()[:, :2].sum() == 0


def test_probabilities_output_and_ensemble(make_volume) -> None:
    vol = make_volume(shape=(1, 12, 12, 10))
    a, b = threshold_net(90.0), threshold_net(110.0)
    probs = Predictor([a, b], patch_size=(8, 8, 8), output="probabilities", device="cpu", precision="float32").predict(
        vol
    )
    assert probs.kind == "probability" and probs.array.shape == (2, 12, 12, 10) and probs.grid == vol.grid
    x = vol.tensor(dtype=torch.float32)[None]
    with torch.no_grad():
        expected = (torch.softmax(a(x), 1) + torch.softmax(b(x), 1))[0] / 2
    torch.testing.assert_close(probs.tensor(), expected, atol=1e-5, rtol=0)


def test_2d_network_runs_slice_wise(make_volume) -> None:
    net2d = nn.Conv2d(1, 3, 3, padding=1)
    vol = make_volume(shape=(1, 16, 16, 5))
    pred = Predictor(net2d, patch_size=(16, 16), device="cpu", precision="float32", output="probabilities").predict(vol)
    x = vol.tensor(dtype=torch.float32)
    with torch.no_grad():
        expected = torch.softmax(net2d(x.permute(3, 0, 1, 2)), 1).permute(1, 2, 3, 0)
    torch.testing.assert_close(pred.tensor(), expected, atol=1e-5, rtol=0)
    labels = Predictor(net2d, patch_size=(16, 16, 1), spatial_dims=2, device="cpu", precision="float32").predict(vol)
    np.testing.assert_array_equal(labels.numpy()[0], expected.argmax(0).numpy())


def test_postprocess_path_and_many(make_volume, tmp_path) -> None:
    from medseg.io import write

    vol = make_volume(shape=(1, 14, 12, 10), affine="anisotropic")
    path = write(vol, tmp_path / "case.nii.gz")
    pred = Predictor(
        threshold_net(), patch_size=(8, 8, 8), device="cpu", precision="float32", postprocess=[KeepLargestComponent()]
    )
    outs = list(pred.predict_many([vol, path]))
    assert len(outs) == 2
    for out in outs:
        assert out.grid.matches(vol.grid, atol=1e-5)
        assert out.history[-1].step == "keep_largest_component"
        assert out.numpy().sum() <= (vol.numpy() > 100).sum()


def test_config_errors() -> None:
    net = threshold_net()
    with pytest.raises(ConfigError, match="output"):
        Predictor(net, patch_size=(8, 8, 8), output="logits")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="networks"):
        Predictor([], patch_size=(8, 8, 8))
    with pytest.raises(ConfigError, match="2D network"):
        Predictor(net, patch_size=(8, 8, 8), spatial_dims=2)


def test_real_transforms_back_on_oblique_lps_grid(make_volume) -> None:
    pytest.importorskip("medseg.transforms.reorient")
    pytest.importorskip("medseg.transforms.resample")
    from medseg.core import build_step
    from tests.conftest import LPS_AFFINE, oblique_affine

    lps_oblique = LPS_AFFINE.copy()
    lps_oblique[:3, :3] = LPS_AFFINE[:3, :3] @ oblique_affine(spacing=(1, 1, 1))[:3, :3]
    rng = np.random.default_rng(0)
    arr = np.full((1, 30, 26, 14), 50.0, np.float32)
    arr[:, 8:22, 6:20, 3:11] = 150.0
    arr += rng.normal(0, 5, arr.shape).astype(np.float32)
    vol = Volume(arr, lps_oblique)
    steps = [build_step("reorient", axcodes="RAS"), build_step("resample", spacing=(1.5, 1.5, 1.5))]
    out = Predictor(threshold_net(), preprocess=steps, patch_size=(8, 8, 8), device="cpu", precision="float32").predict(
        vol
    )
    assert out.spatial_shape == vol.spatial_shape
    assert np.array_equal(out.affine, vol.affine)
    truth = arr[0] > 100
    dice = 2 * np.sum(truth & (out.numpy()[0] == 1)) / (truth.sum() + (out.numpy()[0] == 1).sum())
    assert dice > 0.9


def test_streamed_labels_equal_full_inversion(make_volume) -> None:
    from medseg.core import invert
    from medseg.inference import argmax_labels, invert_to_labels

    vol = make_volume(shape=(1, 16, 14, 12), affine="oblique")
    pre = CropForTest(3)(vol)
    rng = np.random.default_rng(0)
    probs = torch.softmax(torch.from_numpy(rng.normal(size=(4, *pre.spatial_shape)).astype(np.float32)), 0)
    pv = Volume(probs, pre.affine, kind="probability", history=pre.history)
    streamed = invert_to_labels(pv)
    assert streamed.grid == vol.grid and streamed.array.dtype == np.uint8
    np.testing.assert_array_equal(streamed.numpy(), argmax_labels(invert(pv, pre.history).tensor()))
    net = threshold_net()
    kw = dict(preprocess=[CropForTest(2)], patch_size=(6, 6, 6), device="cpu", precision="float32")
    a = Predictor(net, stream_labels=True, **kw).predict(vol)
    b = Predictor(net, stream_labels=False, **kw).predict(vol)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def _blob_probabilities(shape, centre, radius, k=4, seed=0):
    """Smooth class probabilities: background far from ``centre``, classes 1..k-1 inside ``radius``."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    dist = np.sqrt(((grid - np.array(centre)[:, None, None, None]) ** 2).sum(0))
    logits = rng.normal(0, 0.3, size=(k, *shape)).astype(np.float32)
    logits[0] += 3.0 * (dist - radius) / radius
    for c in range(1, k):
        logits[c] += 1.0 + 0.5 * np.sin(grid[0] / (2.0 + c))
    return torch.softmax(torch.from_numpy(logits), 0)


@pytest.mark.parametrize(
    ("affine", "spacing", "centre", "anisotropic"),
    [
        ("oblique", (1.5, 1.5, 1.5), (8, 9, 6), False),
        ("lps", (0.9, 1.3, 2.4), (1, 2, 1), False),  # the foreground touches the corner of the grid
        ("oblique", (0.8, 0.8, 3.5), (10, 4, 5), True),
    ],
)
def test_inverting_only_the_foreground_box_gives_the_whole_grid_result(
    affine, spacing, centre, anisotropic, make_volume
):
    from medseg.core import build_step, invert
    from medseg.inference import argmax_labels, invert_to_labels
    from medseg.inference.predictor import first_grid, foreground_box

    vol = make_volume(shape=(1, 34, 30, 20), affine=affine)
    steps = [build_step("reorient", axcodes="RAS"), build_step("resample", spacing=spacing, anisotropic=anisotropic)]
    pre = vol
    for step in steps:
        pre = step(pre)
    probs = _blob_probabilities(pre.spatial_shape, centre, radius=4.0)
    pv = Volume(probs, pre.affine, kind="probability", history=pre.history)
    box = foreground_box(probs, pv.affine, *first_grid(pv))
    assert box is not None and np.prod([b - a for a, b in box]) < 0.9 * np.prod(vol.spatial_shape)
    fast = invert_to_labels(pv)
    whole = argmax_labels(invert(pv, pre.history).tensor())
    assert fast.grid == vol.grid
    assert (fast.numpy() != whole).sum() <= 2  # equal up to float rounding at exact ties
    assert (whole != 0).sum() > 50


def test_no_foreground_inverts_to_an_empty_map_on_the_input_grid(make_volume):
    from medseg.core import build_step
    from medseg.inference import invert_to_labels

    vol = make_volume(shape=(1, 20, 18, 10), affine="oblique")
    pre = build_step("resample", spacing=2.0)(build_step("reorient", axcodes="LPS")(vol))
    probs = torch.zeros((3, *pre.spatial_shape))
    probs[0] = 1.0
    out = invert_to_labels(Volume(probs, pre.affine, kind="probability", history=pre.history))
    assert out.grid == vol.grid and not out.numpy().any()
