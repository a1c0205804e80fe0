"""Convolutional building blocks whose ops are injected, so one definition serves 2D and 3D.

:class:`ConvBlock` is ``2 × (conv → [dropout] → norm → activation)``. The conv, norm,
activation and dropout *classes* are passed in (as in nnU-Net's
dynamic-network-architectures); :func:`conv_ops` picks them from short names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from medseg.errors import ConfigError, did_you_mean

Norm = Literal["batch", "instance"]
Activation = Literal["relu", "leaky_relu"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_TCONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_DROPOUT = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}
_NORMS: dict[str, dict[int, type[nn.Module]]] = {
    "batch": {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d},
    "instance": {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d},
}
_ACTIVATIONS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "relu": (nn.ReLU, {"inplace": True}),
    "leaky_relu": (nn.LeakyReLU, {"negative_slope": 0.01, "inplace": True}),
}


@dataclass(frozen=True)
class ConvOps:
    """The op classes for one dimensionality (what :class:`ConvBlock` and the networks inject)."""

    spatial_dims: int
    conv: type[nn.Module]
    transposed_conv: type[nn.Module]
    pool: type[nn.Module]
    norm: type[nn.Module]
    norm_kwargs: dict[str, Any]
    nonlin: type[nn.Module]
    nonlin_kwargs: dict[str, Any]
    dropout: type[nn.Module]


def conv_ops(spatial_dims: int, norm: str = "instance", activation: str = "leaky_relu") -> ConvOps:
    """Op classes for ``spatial_dims`` (2 or 3) with the named norm and activation.

    Raises:
        ConfigError: unknown dimensionality, norm or activation (with did-you-mean).
    """
    if spatial_dims not in (1, 2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if norm not in _NORMS:
        raise ConfigError(f"unknown norm '{norm}'{did_you_mean(str(norm), _NORMS)}")
    if activation not in _ACTIVATIONS:
        raise ConfigError(f"unknown activation '{activation}'{did_you_mean(str(activation), _ACTIVATIONS)}")
    nonlin, nonlin_kwargs = _ACTIVATIONS[activation]
    norm_kwargs = {"affine": True, "eps": 1e-5}
    return ConvOps(
        spatial_dims=spatial_dims,
        conv=_CONV[spatial_dims],
        transposed_conv=_TCONV[spatial_dims],
        pool=_POOL[spatial_dims],
        norm=_NORMS[norm][spatial_dims],
        norm_kwargs=norm_kwargs,
        nonlin=nonlin,
        nonlin_kwargs=dict(nonlin_kwargs),
        dropout=_DROPOUT[spatial_dims],
    )


def _same_padding(kernel_size: int | Sequence[int]) -> int | tuple[int, ...]:
    if isinstance(kernel_size, int):
        return kernel_size // 2
    return tuple(k // 2 for k in kernel_size)


class ConvBlock(nn.Module):
    """Two ``conv → [dropout] → norm → activation`` layers.

    The first conv maps ``in_channels`` → ``out_channels`` with ``stride`` (1 keeps the size,
    2 halves it: strided-conv downsampling); the second keeps the size.

    Args:
        in_channels: input channels.
        out_channels: output channels of both convs.
        conv_op: e.g. ``nn.Conv3d`` or ``nn.Conv2d``.
        norm_op: e.g. ``nn.InstanceNorm3d``/``nn.BatchNorm2d``; ``None`` for no norm.
        nonlin: activation class, e.g. ``nn.LeakyReLU``.
        kernel_size: int or one per axis (e.g. ``(3, 3, 1)`` for thick slices).
        stride: stride of the first conv (int or per axis).
        dropout_op: e.g. ``nn.Dropout3d``; used when ``dropout_p > 0``.
        dropout_p: dropout probability.
        norm_kwargs, nonlin_kwargs: keyword arguments of the norm and activation.

    Shapes:
        ``(B, in_channels, *S)`` → ``(B, out_channels, *S / stride)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        conv_op: type[nn.Module] = nn.Conv3d,
        norm_op: type[nn.Module] | None = nn.InstanceNorm3d,
        nonlin: type[nn.Module] = nn.LeakyReLU,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        dropout_op: type[nn.Module] | None = None,
        dropout_p: float = 0.0,
        norm_kwargs: dict[str, Any] | None = None,
        nonlin_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout_p < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout_p}")
        k = kernel_size if isinstance(kernel_size, int) else tuple(kernel_size)
        s = stride if isinstance(stride, int) else tuple(stride)
        layers: list[nn.Module] = []
        for cin, st in ((in_channels, s), (out_channels, 1)):
            layers.append(conv_op(cin, out_channels, k, stride=st, padding=_same_padding(k), bias=norm_op is None))
            if dropout_op is not None and dropout_p > 0:
                layers.append(dropout_op(p=dropout_p))
            if norm_op is not None:
                layers.append(norm_op(out_channels, **(norm_kwargs or {})))
            layers.append(nonlin(**(nonlin_kwargs or {})))
        self.layers = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.out_channels = out_channels

    @classmethod
    def from_ops(
        cls,
        ops: ConvOps,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        dropout: float = 0.0,
    ) -> ConvBlock:
        """A block with the op classes of ``ops`` (see :func:`conv_ops`)."""
        return cls(
            in_channels,
            out_channels,
            conv_op=ops.conv,
            norm_op=ops.norm,
            nonlin=ops.nonlin,
            kernel_size=kernel_size,
            stride=stride,
            dropout_op=ops.dropout,
            dropout_p=dropout,
            norm_kwargs=ops.norm_kwargs,
            nonlin_kwargs=ops.nonlin_kwargs,
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, *S)`` → ``(B, C_out, *S')``."""
        return self.layers(x)  # type: ignore[no-any-return]
