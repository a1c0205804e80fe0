"""A configurable U-Net built from :class:`ConvBlock` s (2D or 3D, anisotropic pooling)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.networks.blocks import ConvBlock, conv_ops
from medseg.networks.init import init_weights
from medseg.networks.patch import check_divisible

PerStage = Sequence[int | Sequence[int]]


def _per_axis(value: int | Sequence[int], dims: int, what: str, stage: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    out = tuple(int(v) for v in value)
    if len(out) != dims:
        raise ConfigError(f"UNet: {what}[{stage}] = {list(out)} needs {dims} values (one per spatial axis)")
    return out


class UNet(nn.Module):
    """Encoder–decoder U-Net of :class:`ConvBlock` s.

    Encoder stage ``i`` downsamples by ``strides[i]`` (max-pooling, or a strided first conv)
    and runs a ConvBlock with ``channels_per_stage[i]`` filters (doubling per stage from
    ``base_channels`` up to ``max_channels`` by default). Each decoder stage is transposed
    conv → concatenate skip → ConvBlock; a 1×1 conv head gives the logits.

    Args:
        in_channels: image channels (modalities).
        out_channels: classes including background.
        spatial_dims: 2 (input ``(B, C, X, Y)``) or 3 (``(B, C, X, Y, Z)``).
        n_stages: encoder stages (resolutions), including the full-resolution one.
        base_channels: filters of the first stage when ``channels_per_stage`` is None.
        max_channels: cap of the doubling.
        channels_per_stage: explicit filters per stage (length ``n_stages``).
        kernel_sizes: per stage, an int or one per axis (e.g. ``(3, 3, 1)``); default 3.
        strides: per stage, an int or one per axis; stage 0 is usually 1. Default
            ``[1, 2, 2, ...]``; use e.g. ``(2, 2, 1)`` to keep thick slices.
        downsampling: ``"max_pool"`` or ``"strided_conv"``.
        norm: ``"instance"`` or ``"batch"``.
        activation: ``"leaky_relu"`` or ``"relu"``.
        dropout: dropout probability inside the blocks.
        deep_supervision: in training mode, also return logits of the lower decoder stages.
        init: ``"kaiming"`` (He, per activation) or ``"gaussian"`` (std 0.01).

    Shapes:
        ``(B, in_channels, *S)`` → ``(B, out_channels, *S)``; with deep supervision in
        training mode a list, full resolution first, then each lower decoder resolution.
        ``S`` must be divisible by :attr:`patch_divisor` (see :meth:`check_patch_size`).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        spatial_dims: int = 3,
        *,
        n_stages: int = 5,
        base_channels: int = 32,
        max_channels: int = 320,
        channels_per_stage: Sequence[int] | None = None,
        kernel_sizes: PerStage | None = None,
        strides: PerStage | None = None,
        downsampling: str = "max_pool",
        norm: str = "instance",
        activation: str = "leaky_relu",
        dropout: float = 0.0,
        deep_supervision: bool = False,
        init: str = "kaiming",
    ) -> None:
        super().__init__()
        if n_stages < 2:
            raise ConfigError(f"UNet: n_stages must be at least 2, got {n_stages}")
        if downsampling not in ("max_pool", "strided_conv"):
            raise ConfigError(f"UNet: downsampling must be 'max_pool' or 'strided_conv', got {downsampling!r}")
        ops = conv_ops(spatial_dims, norm, activation)
        dims = spatial_dims
        if channels_per_stage is None:
            channels_per_stage = [min(base_channels * 2**i, max_channels) for i in range(n_stages)]
        channels = [int(c) for c in channels_per_stage]
        kernel_sizes = [3] * n_stages if kernel_sizes is None else list(kernel_sizes)
        strides = [1] + [2] * (n_stages - 1) if strides is None else list(strides)
        for what, seq in (("channels_per_stage", channels), ("kernel_sizes", kernel_sizes), ("strides", strides)):
            if len(seq) != n_stages:
                raise ConfigError(f"UNet: {what} has {len(seq)} entries but n_stages is {n_stages}")
        self.kernel_sizes = [_per_axis(k, dims, "kernel_sizes", i) for i, k in enumerate(kernel_sizes)]
        self.strides = [_per_axis(s, dims, "strides", i) for i, s in enumerate(strides)]
        self.spatial_dims = dims
        self.deep_supervision = deep_supervision
        self.encoder = nn.ModuleList()
        for i in range(n_stages):
            cin = in_channels if i == 0 else channels[i - 1]
            stride = self.strides[i]
            block_stride: tuple[int, ...] = (1,) * dims
            layers: list[nn.Module] = []
            if any(s > 1 for s in stride):
                if downsampling == "max_pool":
                    layers.append(ops.pool(kernel_size=stride, stride=stride))
                else:
                    block_stride = stride
            layers.append(
                ConvBlock.from_ops(
                    ops, cin, channels[i], kernel_size=self.kernel_sizes[i], stride=block_stride, dropout=dropout
                )
            )
            self.encoder.append(nn.Sequential(*layers))
        self.upsamplers = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.heads = nn.ModuleList()
        for i in range(n_stages - 1, 0, -1):
            self.upsamplers.append(
                ops.transposed_conv(channels[i], channels[i - 1], self.strides[i], stride=self.strides[i], bias=False)
            )
            self.decoder.append(
                ConvBlock.from_ops(
                    ops, 2 * channels[i - 1], channels[i - 1], kernel_size=self.kernel_sizes[i - 1], dropout=dropout
                )
            )
            if deep_supervision or i == 1:  # unused heads would stall DDP (no gradient)
                self.heads.append(ops.conv(channels[i - 1], out_channels, 1))
        self.channels_per_stage = channels
        init_weights(self, init, activation=activation)

    @property
    def patch_divisor(self) -> tuple[int, ...]:
        """What each spatial axis of the input must be divisible by (product of strides)."""
        div = [1] * self.spatial_dims
        for stride in self.strides:
            div = [d * s for d, s in zip(div, stride)]
        return tuple(div)

    def check_patch_size(self, patch_size: Sequence[int]) -> tuple[int, ...]:
        """Raise :class:`ConfigError` (naming the axis and nearest valid sizes) unless it fits."""
        return check_divisible(patch_size, self.patch_divisor, "UNet")

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """``(B, C_in, *S)`` → logits ``(B, C_out, *S)`` (a list with deep supervision in training)."""
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        outputs = []
        x = skips[-1]
        for j, (up, block) in enumerate(zip(self.upsamplers, self.decoder)):
            x = up(x)
            x = block(torch.cat([x, skips[-(j + 2)]], dim=1))
            if self.deep_supervision and self.training:
                outputs.append(self.heads[j](x))
        if self.deep_supervision and self.training:
            return outputs[::-1]
        return self.heads[-1](x)  # type: ignore[no-any-return]
