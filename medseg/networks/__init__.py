"""Networks: :class:`ConvBlock`, :class:`UNet`, :class:`ConvBlockClassifier` and MONAI's, by name.

>>> from medseg.networks import build_network, check_patch_size
>>> net = build_network("unet", in_channels=1, out_channels=3, spatial_dims=3, n_stages=4)
>>> check_patch_size(net, (64, 64, 32))
(64, 64, 32)
"""

from __future__ import annotations

from medseg.networks.blocks import ConvBlock, ConvOps, conv_ops
from medseg.networks.classifier import ConvBlockClassifier
from medseg.networks.external import CarriedWeightsNetwork, resolve_weights_path
from medseg.networks.init import init_weights
from medseg.networks.registry import (
    NETWORKS,
    NetworkInfo,
    build_network,
    check_patch_size,
    list_networks,
    network_info,
    patch_divisor,
    register_network,
    tiny_options,
)
from medseg.networks.unet import UNet

__all__ = [
    "NETWORKS",
    "CarriedWeightsNetwork",
    "ConvBlock",
    "ConvBlockClassifier",
    "ConvOps",
    "NetworkInfo",
    "UNet",
    "build_network",
    "check_patch_size",
    "conv_ops",
    "init_weights",
    "list_networks",
    "network_info",
    "patch_divisor",
    "register_network",
    "resolve_weights_path",
    "tiny_options",
]
