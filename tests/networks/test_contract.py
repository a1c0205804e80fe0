"""Registry-generated contract tests: every network, 2D and 3D, forward + backward."""

from __future__ import annotations

import pytest
import torch

from medseg.networks import build_network, check_patch_size, list_networks, network_info, tiny_options

# networks that carry their weights are files, not trainable: tests/networks/test_external.py covers them
CASES = [(name, dims) for name in list_networks() if not network_info(name).carries_weights for dims in (2, 3)]


@pytest.mark.parametrize(("name", "dims"), CASES, ids=[f"{n}-{d}d" for n, d in CASES])
def test_forward_backward(name: str, dims: int) -> None:
    if name == "monai.swin_unetr":
        pytest.importorskip("einops", reason="MONAI's SwinUNETR needs einops")
    options, patch = tiny_options(name, dims)
    spec = network_info(name)
    if spec.task == "segmentation":
        options.update(in_channels=2, out_channels=3)
    else:
        options.update(in_channels=2)
    net = build_network(name, **options)
    assert check_patch_size(net, patch) == patch
    x = torch.randn(2, 2, *patch, requires_grad=True)
    net.train()
    out = net(x)
    outputs = out if isinstance(out, list) else [out]
    if spec.task == "segmentation":
        assert tuple(outputs[0].shape) == (2, 3, *patch)
        for o in outputs[1:]:
            assert o.shape[:2] == (2, 3) and o.ndim == 2 + dims
    else:
        assert tuple(outputs[0].shape) == (2, options["n_classes"])
    loss = sum(o.float().square().mean() for o in outputs)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
    net.eval()
    with torch.no_grad():
        y = net(x)
    assert isinstance(y, torch.Tensor) and not torch.isnan(y).any()
    assert y.shape == outputs[0].shape


def test_every_network_has_tiny_options() -> None:
    assert {
        "unet",
        "conv_block_classifier",
        "monai.unet",
        "monai.dyn_unet",
        "monai.seg_resnet",
        "monai.swin_unetr",
    } <= set(list_networks())
    for name in list_networks():
        opts, patch = tiny_options(name, 3)
        assert len(patch) == 3 and opts["spatial_dims"] == 3


def test_swin_unetr_without_einops_says_what_to_install() -> None:
    import importlib.util

    from medseg.errors import ConfigError

    if importlib.util.find_spec("einops") is not None:
        pytest.skip("einops is installed")
    with pytest.raises(ConfigError, match="pip install einops"):
        build_network("monai.swin_unetr", feature_size=12)
