"""Case-level image classifier: five ConvBlocks with max-pooling, three FC layers, N-way softmax."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.networks.blocks import ConvBlock, conv_ops
from medseg.networks.init import init_weights
from medseg.networks.patch import check_divisible


class ConvBlockClassifier(nn.Module):
    """The ConvBlock image classifier of our reference article, 2D or 3D.

    ``n_blocks`` ConvBlocks, each followed by 2× max-pooling; filters start at
    ``base_channels`` and double after each pooling except the last (64, 128, 256, 512, 512
    by default). The features are flattened into ``n_fc`` fully connected layers of
    ``fc_units`` units (ReLU + dropout), then a linear layer to ``n_classes`` logits;
    the N-way softmax is :meth:`predict_proba` (training uses cross-entropy on the logits).
    Weights start Gaussian (std 0.01) by default.

    Args:
        in_channels: image channels.
        n_classes: number of case-level classes (83 in the article).
        spatial_dims: 2 or 3.
        input_size: the fixed spatial size of the input (voxels per axis); each axis
            must be divisible by ``2 ** n_blocks``.
        base_channels: filters of the first block.
        n_blocks: ConvBlocks (each followed by pooling).
        fc_units: units of each hidden fully connected layer (4096 in the article).
        n_fc: hidden fully connected layers.
        dropout: dropout probability after each hidden FC layer.
        norm: ``"batch"`` or ``"instance"``.
        activation: ``"relu"`` or ``"leaky_relu"``.
        init: ``"gaussian"`` or ``"kaiming"``.

    Shapes:
        ``(B, in_channels, *input_size)`` → logits ``(B, n_classes)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 83,
        spatial_dims: int = 2,
        *,
        input_size: Sequence[int] = (224, 224),
        base_channels: int = 64,
        n_blocks: int = 5,
        fc_units: int = 4096,
        n_fc: int = 3,
        dropout: float = 0.5,
        norm: str = "batch",
        activation: str = "relu",
        init: str = "gaussian",
    ) -> None:
        super().__init__()
        if n_blocks < 1 or n_fc < 0 or n_classes < 2:
            raise ConfigError(
                f"ConvBlockClassifier: need n_blocks >= 1, n_fc >= 0 and n_classes >= 2, got "
                f"n_blocks={n_blocks}, n_fc={n_fc}, n_classes={n_classes}"
            )
        ops = conv_ops(spatial_dims, norm, activation)
        self.spatial_dims = spatial_dims
        self.n_blocks = n_blocks
        self.input_size = check_divisible(input_size, (2**n_blocks,) * spatial_dims, "ConvBlockClassifier")
        channels = [base_channels * 2 ** min(i, max(n_blocks - 2, 0)) for i in range(n_blocks)]
        features: list[nn.Module] = []
        cin = in_channels
        for c in channels:
            features += [ConvBlock.from_ops(ops, cin, c), ops.pool(kernel_size=2, stride=2)]
            cin = c
        self.features = nn.Sequential(*features)
        flat = channels[-1] * math.prod(s // 2**n_blocks for s in self.input_size)
        fc: list[nn.Module] = []
        width = flat
        for _ in range(n_fc):
            fc += [nn.Linear(width, fc_units), ops.nonlin(**ops.nonlin_kwargs), nn.Dropout(dropout)]
            width = fc_units
        fc.append(nn.Linear(width, n_classes))
        self.classifier = nn.Sequential(*fc)
        self.channels_per_stage = channels
        init_weights(self, init, activation=activation)

    @property
    def patch_divisor(self) -> tuple[int, ...]:
        """Each axis must be divisible by ``2 ** n_blocks`` (and equal ``input_size``)."""
        return (2**self.n_blocks,) * self.spatial_dims

    def check_patch_size(self, patch_size: Sequence[int]) -> tuple[int, ...]:
        """Raise :class:`ConfigError` unless ``patch_size`` equals ``input_size``."""
        patch = check_divisible(patch_size, self.patch_divisor, "ConvBlockClassifier")
        if patch != self.input_size:
            raise ConfigError(
                f"ConvBlockClassifier: patch_size {list(patch)} differs from the input_size "
                f"{list(self.input_size)} the network was built for; use patch_size {list(self.input_size)} "
                "or build the network with that input_size"
            )
        return patch

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, *input_size)`` → logits ``(B, n_classes)``."""
        if tuple(x.shape[2:]) != self.input_size:
            raise ConfigError(
                f"ConvBlockClassifier: input spatial shape {tuple(x.shape[2:])} != input_size {self.input_size}"
            )
        return self.classifier(torch.flatten(self.features(x), 1))  # type: ignore[no-any-return]

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:
        """Class probabilities ``(B, n_classes)`` (softmax of the logits)."""
        return torch.softmax(self.forward(x), dim=1)
