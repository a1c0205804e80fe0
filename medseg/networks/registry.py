"""The network registry: ours and MONAI's, built by short name with checked options.

Every entry knows what the patch size must be divisible by (so a bad patch size fails
before any compute) and a tiny configuration used by the registry-generated contract tests.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from medseg.core.registry import Registry, check_options
from medseg.errors import ConfigError
from medseg.networks.classifier import ConvBlockClassifier
from medseg.networks.patch import check_divisible
from medseg.networks.unet import UNet

Task = Literal["segmentation", "classification"]

#: Name → network class or factory; options are checked with did-you-mean.
NETWORKS: Registry[Callable[..., nn.Module]] = Registry("network")


@dataclass(frozen=True)
class NetworkInfo:
    """What the registry entry of a network holds besides how to build it.

    Attributes:
        name: registered name.
        task: ``"segmentation"`` (dense logits ``(B, C, *S)``) or ``"classification"`` (``(B, N)``).
        divisor: options (defaults applied) → per-axis divisor of the patch size.
        tiny: small options for tests and examples (``spatial_dims`` is added by the caller).
        tiny_patch: spatial dims → a patch size that fits ``tiny``.
        carries_weights: the network is a file with its weights (TorchScript, ONNX): it needs no
            checkpoint and cannot be trained by medseg (see :mod:`medseg.networks.external`).
    """

    name: str
    task: Task
    divisor: Callable[[dict[str, Any]], tuple[int, ...]]
    tiny: dict[str, Any] = field(default_factory=dict)
    tiny_patch: Callable[[int], tuple[int, ...]] = lambda dims: (32,) * dims
    carries_weights: bool = False


def register_network(
    name: str,
    *,
    task: Task = "segmentation",
    divisor: Callable[[dict[str, Any]], tuple[int, ...]],
    tiny: dict[str, Any] | None = None,
    tiny_patch: Callable[[int], tuple[int, ...]] | None = None,
    carries_weights: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a network class/factory under ``name`` with its :class:`NetworkInfo`."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        tiny_size = tiny_patch or (lambda dims: (32,) * dims)
        info = NetworkInfo(name, task, divisor, dict(tiny or {}), tiny_size, carries_weights)
        return NETWORKS.register(name, info=info)(factory)

    return deco


def list_networks() -> list[str]:
    """Registered network names, sorted."""
    return NETWORKS.names()


def network_info(name: str) -> NetworkInfo:
    """The :class:`NetworkInfo` of ``name`` (did-you-mean on typos)."""
    info: NetworkInfo = NETWORKS.info(name)
    return info


def _bound_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    factory = NETWORKS.get(name)
    check_options(f"network '{name}'", factory, options)
    sig = inspect.signature(factory)
    bound = sig.bind_partial(**options)
    bound.apply_defaults()
    return dict(bound.arguments)


def build_network(name: str, **options: Any) -> nn.Module:
    """Build the network registered as ``name`` with keyword ``options``.

    Common options of the segmentation networks: ``in_channels``, ``out_channels``
    (classes including background) and ``spatial_dims`` (2: input ``(B, C, X, Y)``;
    3: ``(B, C, X, Y, Z)``).

    Returns:
        The module, with attribute ``patch_divisor`` (per-axis divisor of the patch size).

    Raises:
        ConfigError: unknown name or option (did-you-mean), or invalid option values.
    """
    info = network_info(name)
    net: nn.Module = NETWORKS.build(name, **options)
    if not hasattr(net, "check_patch_size"):
        net.patch_divisor = info.divisor(_bound_options(name, options))  # type: ignore[assignment]
    return net


def patch_divisor(name_or_net: str | nn.Module, **options: Any) -> tuple[int, ...]:
    """Per-axis divisor the patch size of a network (by name + options, or built) must meet."""
    if isinstance(name_or_net, str):
        return network_info(name_or_net).divisor(_bound_options(name_or_net, options))
    divisor = getattr(name_or_net, "patch_divisor", None)
    if divisor is None:
        raise ConfigError(
            f"{type(name_or_net).__name__} has no patch_divisor; build it with medseg.networks.build_network"
        )
    return tuple(divisor)


def check_patch_size(name_or_net: str | nn.Module, patch_size: Sequence[int], **options: Any) -> tuple[int, ...]:
    """Raise :class:`ConfigError` before any compute when ``patch_size`` does not fit the network.

    The message names the axis, its divisor and the nearest valid sizes.

    Args:
        name_or_net: a registered name (then ``options`` are the network's options) or a
            network from :func:`build_network`.
        patch_size: voxels per spatial axis.

    Returns:
        ``patch_size`` as a tuple of ints.
    """
    if isinstance(name_or_net, nn.Module) and hasattr(name_or_net, "check_patch_size"):
        return name_or_net.check_patch_size(patch_size)  # type: ignore[operator,no-any-return]
    if isinstance(name_or_net, str) and network_info(name_or_net).task == "classification":
        with torch.device("meta"):
            net = build_network(name_or_net, **options)
        return net.check_patch_size(patch_size)  # type: ignore[operator,no-any-return]
    where = name_or_net if isinstance(name_or_net, str) else type(name_or_net).__name__
    return check_divisible(patch_size, patch_divisor(name_or_net, **options), where)


def _prod_strides(strides: Sequence[int | Sequence[int]], dims: int) -> tuple[int, ...]:
    div = [1] * dims
    for s in strides:
        per_axis = (s,) * dims if isinstance(s, int) else tuple(s)
        div = [d * int(v) for d, v in zip(div, per_axis)]
    return tuple(div)


def _unet_divisor(o: dict[str, Any]) -> tuple[int, ...]:
    dims = int(o["spatial_dims"])
    strides = o["strides"] if o["strides"] is not None else [1] + [2] * (int(o["n_stages"]) - 1)
    return _prod_strides(strides, dims)


register_network(
    "unet",
    divisor=_unet_divisor,
    tiny={"n_stages": 3, "base_channels": 4, "deep_supervision": True},
    tiny_patch=lambda dims: (16,) * dims,
)(UNet)
register_network(
    "conv_block_classifier",
    task="classification",
    divisor=lambda o: (2 ** int(o["n_blocks"]),) * int(o["spatial_dims"]),
    tiny={"n_classes": 3, "base_channels": 2, "n_blocks": 5, "fc_units": 16, "input_size": None},
    tiny_patch=lambda dims: (32,) * dims,
)(ConvBlockClassifier)


# ---- MONAI networks -------------------------------------------------------------------------


@register_network(
    "monai.unet",
    divisor=lambda o: _prod_strides(o["strides"], int(o["spatial_dims"])),
    tiny={"channels": (4, 8, 16), "strides": (2, 2), "num_res_units": 1},
    tiny_patch=lambda dims: (16,) * dims,
)
def monai_unet(
    in_channels: int = 1,
    out_channels: int = 2,
    spatial_dims: int = 3,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    strides: Sequence[int] = (2, 2, 2, 2),
    kernel_size: int = 3,
    num_res_units: int = 2,
    norm: str = "instance",
    act: str = "prelu",
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI's residual ``UNet`` (``monai.networks.nets.UNet``)."""
    from monai.networks.nets import UNet as MonaiUNet

    if len(strides) != len(channels) - 1:
        raise ConfigError(
            f"monai.unet: strides needs len(channels) - 1 = {len(channels) - 1} entries, got {len(strides)}"
        )
    return MonaiUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(channels),
        strides=tuple(strides),
        kernel_size=kernel_size,
        num_res_units=num_res_units,
        norm=norm,
        act=act,
        dropout=dropout,
    )


def _dyn_strides(o: dict[str, Any]) -> list[Any]:
    return list(o["strides"]) if o["strides"] is not None else [1] + [2] * (int(o["n_stages"]) - 1)


@register_network(
    "monai.dyn_unet",
    divisor=lambda o: _prod_strides(_dyn_strides(o), int(o["spatial_dims"])),
    tiny={"n_stages": 3, "filters": (4, 8, 16), "deep_supervision": True},
    tiny_patch=lambda dims: (16,) * dims,
)
def monai_dyn_unet(
    in_channels: int = 1,
    out_channels: int = 2,
    spatial_dims: int = 3,
    n_stages: int = 5,
    kernel_size: Sequence[int | Sequence[int]] | None = None,
    strides: Sequence[int | Sequence[int]] | None = None,
    filters: Sequence[int] | None = None,
    deep_supervision: bool = False,
    deep_supr_num: int = 1,
    res_block: bool = False,
    norm_name: str = "instance",
) -> nn.Module:
    """MONAI's ``DynUNet`` (nnU-Net-like). With deep supervision, training returns a list."""
    from monai.networks.nets import DynUNet

    strides = _dyn_strides(locals())
    kernel_size = list(kernel_size) if kernel_size is not None else [3] * len(strides)

    class _DynUNet(DynUNet):  # type: ignore[misc]
        def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
            out = super().forward(x)
            if self.training and self.deep_supervision:
                return list(torch.unbind(out, dim=1))
            return out  # type: ignore[no-any-return]

    return _DynUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernel_size,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=list(filters) if filters is not None else None,
        norm_name=norm_name,
        deep_supervision=deep_supervision,
        deep_supr_num=deep_supr_num,
        res_block=res_block,
    )


@register_network(
    "monai.seg_resnet",
    divisor=lambda o: (2 ** (len(o["blocks_down"]) - 1),) * int(o["spatial_dims"]),
    tiny={"init_filters": 8, "blocks_down": (1, 1, 1), "blocks_up": (1, 1)},
    tiny_patch=lambda dims: (16,) * dims,
)
def monai_seg_resnet(
    in_channels: int = 1,
    out_channels: int = 2,
    spatial_dims: int = 3,
    init_filters: int = 8,
    blocks_down: Sequence[int] = (1, 2, 2, 4),
    blocks_up: Sequence[int] = (1, 1, 1),
    dropout_prob: float | None = None,
) -> nn.Module:
    """MONAI's ``SegResNet`` (group norm with 8 groups: ``init_filters`` a multiple of 8)."""
    from monai.networks.nets import SegResNet

    if init_filters % 8:
        raise ConfigError(f"monai.seg_resnet: init_filters must be a multiple of 8 (group norm), got {init_filters}")
    return SegResNet(
        spatial_dims=spatial_dims,
        init_filters=init_filters,
        in_channels=in_channels,
        out_channels=out_channels,
        dropout_prob=dropout_prob,
        blocks_down=tuple(blocks_down),
        blocks_up=tuple(blocks_up),
    )


@register_network(
    "monai.swin_unetr",
    divisor=lambda o: (32,) * int(o["spatial_dims"]),
    tiny={"feature_size": 12, "depths": (1, 1, 1, 1)},
    # 32 per axis leaves 1 voxel at the bottleneck, where instance norm fails in training
    tiny_patch=lambda dims: (64, 64) if dims == 2 else (64, 64, 32),
)
def monai_swin_unetr(
    in_channels: int = 1,
    out_channels: int = 2,
    spatial_dims: int = 3,
    feature_size: int = 24,
    depths: Sequence[int] = (2, 2, 2, 2),
    num_heads: Sequence[int] = (3, 6, 12, 24),
    use_checkpoint: bool = False,
    use_v2: bool = False,
) -> nn.Module:
    """MONAI's ``SwinUNETR`` (patch size divisible by 32; ``feature_size`` a multiple of 12)."""
    import importlib.util

    from monai.networks.nets import SwinUNETR

    if importlib.util.find_spec("einops") is None:
        raise ConfigError("monai.swin_unetr needs the 'einops' package, which is not installed: pip install einops")
    if feature_size % 12:
        raise ConfigError(f"monai.swin_unetr: feature_size must be a multiple of 12, got {feature_size}")
    return SwinUNETR(
        in_channels=in_channels,
        out_channels=out_channels,
        spatial_dims=spatial_dims,
        feature_size=feature_size,
        depths=tuple(depths),
        num_heads=tuple(num_heads),
        use_checkpoint=use_checkpoint,
        use_v2=use_v2,
    )


@register_network(
    "monai.attention_unet",
    divisor=lambda o: _prod_strides(o["strides"], int(o["spatial_dims"])),
    tiny={"channels": (4, 8, 16), "strides": (2, 2)},
    tiny_patch=lambda dims: (16,) * dims,
)
def monai_attention_unet(
    in_channels: int = 1,
    out_channels: int = 2,
    spatial_dims: int = 3,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    strides: Sequence[int] = (2, 2, 2, 2),
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI's ``AttentionUnet``."""
    from monai.networks.nets import AttentionUnet

    return AttentionUnet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(channels),
        strides=tuple(strides),
        dropout=dropout,
    )


@register_network(
    "monai.basic_unet",
    divisor=lambda o: (16,) * int(o["spatial_dims"]),
    tiny={"features": (4, 4, 8, 8, 16, 4)},
    tiny_patch=lambda dims: (32,) * dims,
)
def monai_basic_unet(
    in_channels: int = 1,
    out_channels: int = 2,
    spatial_dims: int = 3,
    features: Sequence[int] = (32, 32, 64, 128, 256, 32),
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI's ``BasicUNet`` (patch size divisible by 16)."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        features=tuple(features),
        dropout=dropout,
    )


def tiny_options(name: str, spatial_dims: int) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Small options and a fitting patch size for ``name`` (used by tests and examples)."""
    info = network_info(name)
    patch = info.tiny_patch(spatial_dims)
    options = {**info.tiny, "spatial_dims": spatial_dims}
    if "input_size" in options:
        options["input_size"] = patch
    return options, patch


__all__ = [
    "NETWORKS",
    "NetworkInfo",
    "build_network",
    "check_patch_size",
    "list_networks",
    "network_info",
    "patch_divisor",
    "register_network",
    "tiny_options",
]
