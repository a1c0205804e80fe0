from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.networks import ConvBlock, ConvBlockClassifier, UNet, build_network, check_patch_size, conv_ops


def test_conv_block_ops_are_injected() -> None:
    block = ConvBlock(3, 8, conv_op=nn.Conv2d, norm_op=nn.BatchNorm2d, nonlin=nn.ReLU, stride=2)
    kinds = [type(m) for m in block.layers]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert block(torch.randn(1, 3, 16, 12)).shape == (1, 8, 8, 6)
    ops = conv_ops(3, "instance", "leaky_relu")
    b3 = ConvBlock.from_ops(ops, 1, 4, kernel_size=(3, 3, 1), dropout=0.2)
    assert any(isinstance(m, nn.Dropout3d) for m in b3.layers)
    assert b3(torch.randn(2, 1, 8, 8, 4)).shape == (2, 4, 8, 8, 4)


def test_conv_ops_unknown_names() -> None:
    with pytest.raises(ConfigError, match="did you mean 'instance'"):
        conv_ops(3, "instanse")
    with pytest.raises(ConfigError, match="spatial_dims"):
        conv_ops(4)


def test_unet_channels_double_up_to_cap_and_anisotropic_strides() -> None:
    net = UNet(1, 3, 3, n_stages=5, base_channels=8, max_channels=32, strides=[1, (2, 2, 1), 2, 2, (2, 2, 1)])
    assert net.channels_per_stage == [8, 16, 32, 32, 32]
    assert net.patch_divisor == (16, 16, 4)
    x = torch.randn(1, 1, 32, 16, 8)
    assert net(x).shape == (1, 3, 32, 16, 8)
    strided = UNet(1, 2, 2, n_stages=3, base_channels=4, downsampling="strided_conv")
    assert not any(isinstance(m, nn.MaxPool2d) for m in strided.modules())
    assert strided(torch.randn(1, 1, 16, 8)).shape == (1, 2, 16, 8)


def test_unet_deep_supervision_resolutions() -> None:
    net = UNet(1, 2, 3, n_stages=4, base_channels=4, deep_supervision=True)
    outs = net(torch.randn(1, 1, 16, 16, 8))
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 16, 8), (8, 8, 4), (4, 4, 2)]


def test_kaiming_and_gaussian_init() -> None:
    torch.manual_seed(0)
    k = UNet(1, 2, 3, n_stages=2, base_channels=32, init="kaiming")
    g = UNet(1, 2, 3, n_stages=2, base_channels=32, init="gaussian")
    wk = k.encoder[1][-1].layers[0].weight.detach()  # 32 -> 64, 3x3x3: fan_in 864
    wg = g.encoder[1][-1].layers[0].weight.detach()
    expected = (2.0 / (1 + 0.01**2) / (32 * 27)) ** 0.5
    assert abs(float(wk.std()) - expected) / expected < 0.05
    assert abs(float(wg.std()) - 0.01) < 0.001
    with pytest.raises(ConfigError, match="did you mean 'gaussian'"):
        UNet(1, 2, 3, n_stages=2, init="gausian")


def test_patch_size_error_names_axis_and_nearest_sizes() -> None:
    with pytest.raises(ConfigError) as exc:
        check_patch_size("unet", (64, 60, 32), n_stages=5)
    msg = str(exc.value)
    assert "axis 1 (Y) = 60 is not divisible by 16" in msg and "48 or 64" in msg and "[64, 64, 32]" in msg
    net = build_network("monai.unet", spatial_dims=2, channels=(4, 8, 16), strides=(2, 2))
    assert net.patch_divisor == (4, 4)
    with pytest.raises(ConfigError, match="axis 0"):
        check_patch_size(net, (30, 32))
    with pytest.raises(ConfigError, match="3 axes but the network is 2D"):
        check_patch_size(net, (32, 32, 32))
    assert check_patch_size("monai.swin_unetr", (64, 64, 96)) == (64, 64, 96)


def test_build_network_unknown_names() -> None:
    with pytest.raises(ConfigError, match="did you mean 'unet'"):
        build_network("unte")
    with pytest.raises(ConfigError, match="did you mean 'n_stages'"):
        build_network("unet", n_stage=3)


def test_classifier_article_layout() -> None:
    net = ConvBlockClassifier(1, 83, 2, input_size=(64, 64), base_channels=4, fc_units=32, dropout=0.5)
    assert net.channels_per_stage == [4, 8, 16, 32, 32]
    linears = [m for m in net.classifier if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [32, 32, 32, 83]
    assert sum(isinstance(m, nn.Dropout) for m in net.classifier) == 3
    net.eval()
    p = net.predict_proba(torch.randn(2, 1, 64, 64))
    assert p.shape == (2, 83) and torch.allclose(p.sum(1), torch.ones(2))
    with pytest.raises(ConfigError, match="input_size"):
        net.check_patch_size((96, 96))
    with pytest.raises(ConfigError, match="divisible by 32"):
        check_patch_size("conv_block_classifier", (100, 96), input_size=(96, 96))


@pytest.mark.parametrize("deep_supervision", [False, True])
def test_every_parameter_gets_a_gradient(deep_supervision: bool) -> None:
    """Unused parameters would stall DistributedDataParallel."""
    net = UNet(1, 2, 2, n_stages=3, base_channels=4, deep_supervision=deep_supervision)
    out = net(torch.randn(2, 1, 16, 16))
    sum(o.sum() for o in (out if isinstance(out, list) else [out])).backward()
    assert all(p.grad is not None for p in net.parameters())
