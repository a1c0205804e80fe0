"""Sliding-window inference against MONAI's, plus mirroring, padding and errors."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import sliding_window_inference as monai_swi
from monai.networks.nets import UNet
from torch import nn

from medseg.errors import ConfigError, InputError
from medseg.inference import axis_starts, importance_map, sliding_window_inference
from medseg.inference.sliding_window import mirror_combinations


def small_unet() -> nn.Module:
    torch.manual_seed(0)
    return UNet(3, 1, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=1).eval()


@pytest.mark.parametrize(
    ("shape", "patch", "batch_size"),
    [
        ((1, 1, 40, 37, 30), (16, 16, 16), 4),
        ((2, 1, 20, 10, 33), (16, 16, 16), 3),  # Y shorter than the window: padded
        ((1, 1, 32, 24, 16), (16, 24, 16), 1),  # one axis exactly one window
    ],
)
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_equals_monai(shape, patch, batch_size, blend) -> None:
    net = small_unet()
    x = torch.randn(shape)
    with torch.no_grad():
        ref = monai_swi(x, patch, batch_size, net, overlap=0.5, mode=blend, sigma_scale=0.125)
    out = sliding_window_inference(x, net, patch_size=patch, batch_size=batch_size, blend=blend)
    assert out.shape == (shape[0], 3, *shape[2:])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref.as_tensor() if hasattr(ref, "as_tensor") else ref, atol=1e-4, rtol=0)


def test_axis_starts_match_monai_placement() -> None:
    assert axis_starts(273, 96, 0.5) == [0, 48, 96, 144, 177]
    assert axis_starts(96, 96, 0.5) == [0]
    assert axis_starts(100, 96, 0.0) == [0, 4]


def test_importance_map_peak_and_floor() -> None:
    w = importance_map((9, 7, 5))  # odd sizes: a voxel sits on the peak
    assert w.shape == (9, 7, 5)
    assert float(w.max()) == pytest.approx(1.0)
    assert float(w.min()) >= 1e-3
    assert torch.equal(importance_map((4, 4), "constant"), torch.ones(4, 4))
    with pytest.raises(ConfigError, match="blend"):
        importance_map((4, 4), "linear")  # type: ignore[arg-type]


def test_mirroring_of_a_symmetric_net_changes_nothing_and_flip_equivariant_output() -> None:
    net = nn.Conv3d(1, 2, 3, padding=1)
    with torch.no_grad():
        net.weight.copy_(torch.rand_like(net.weight))
        net.weight.copy_((net.weight + net.weight.flip(2)) / 2)  # symmetric along X
    x = torch.randn(1, 1, 20, 18, 17)
    plain = sliding_window_inference(x, net, patch_size=(8, 8, 8))
    mirrored = sliding_window_inference(x, net, patch_size=(8, 8, 8), mirror_axes=(0,))
    torch.testing.assert_close(mirrored, plain, atol=1e-5, rtol=0)
    assert mirror_combinations((2, 0)) == [(), (0,), (2,), (0, 2)]


def test_mirroring_averages_flipped_predictions() -> None:
    net = nn.Conv3d(1, 1, 3, padding=1, bias=False)
    torch.manual_seed(1)
    x = torch.randn(1, 1, 12, 12, 12)
    full = sliding_window_inference(x, net, patch_size=(12, 12, 12), mirror_axes=(1,))
    with torch.no_grad():
        expected = (net(x) + net(x.flip(3)).flip(3)) / 2
    torch.testing.assert_close(full, expected, atol=1e-5, rtol=0)


def test_2d() -> None:
    net = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(1, 2, 30, 21)
    with torch.no_grad():
        ref = monai_swi(x, (16, 16), 2, net, overlap=0.5, mode="gaussian")
    out = sliding_window_inference(x, net, patch_size=(16, 16), batch_size=2)
    torch.testing.assert_close(out, ref.as_tensor() if hasattr(ref, "as_tensor") else ref, atol=1e-4, rtol=0)


def test_output_on_cpu_when_asked() -> None:
    net = nn.Conv3d(1, 2, 1)
    out = sliding_window_inference(torch.randn(1, 1, 8, 8, 8), net, patch_size=(4, 4, 4), output_device="cpu")
    assert out.device.type == "cpu"


def test_errors() -> None:
    net = nn.Conv3d(1, 2, 1)
    with pytest.raises(InputError, match=r"\(B, C, X, Y, Z\)"):
        sliding_window_inference(torch.randn(1, 8, 8, 8), net, patch_size=(4, 4, 4))
    with pytest.raises(ConfigError, match="overlap"):
        sliding_window_inference(torch.randn(1, 1, 8, 8, 8), net, patch_size=(4, 4, 4), overlap=1.0)
    with pytest.raises(ConfigError, match="mirror_axes"):
        sliding_window_inference(torch.randn(1, 1, 8, 8, 8), net, patch_size=(4, 4, 4), mirror_axes=(3,))
    with pytest.raises(InputError, match="spatial size"):
        sliding_window_inference(torch.randn(1, 1, 8, 8, 8), nn.Conv3d(1, 2, 3), patch_size=(4, 4, 4))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_close_to_fp32() -> None:
    net = small_unet().cuda()
    x = torch.randn(1, 1, 40, 40, 40, device="cuda")
    a = sliding_window_inference(x, net, patch_size=(16, 16, 16))
    b = sliding_window_inference(x, net, patch_size=(16, 16, 16), precision=torch.float16)
    assert a.device.type == "cuda"
    torch.testing.assert_close(a, b, atol=5e-2, rtol=0)


def test_channels_last_network_gives_the_same_logits():
    import copy

    from monai.networks.nets import UNet

    from medseg.inference.sliding_window import channels_last

    torch.manual_seed(3)
    net = UNet(3, 1, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=1).eval()
    fast = copy.deepcopy(net).to(memory_format=torch.channels_last_3d)
    assert not channels_last(net) and channels_last(fast)
    image = torch.randn(1, 1, 40, 36, 28)
    ref = sliding_window_inference(image, net, patch_size=(24, 24, 24), batch_size=3)
    out = sliding_window_inference(image, fast, patch_size=(24, 24, 24), batch_size=3)
    assert torch.allclose(out, ref, atol=1e-5)
