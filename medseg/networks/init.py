"""Weight initialisation: He/Kaiming matched to the activation, or Gaussian."""

from __future__ import annotations

from typing import Literal

from torch import nn

from medseg.errors import ConfigError, did_you_mean

Init = Literal["kaiming", "gaussian"]
INITS = ("kaiming", "gaussian")

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def init_weights(
    module: nn.Module, init: str = "kaiming", *, activation: str = "leaky_relu", std: float = 0.01
) -> None:
    """Initialise every conv/linear layer of ``module`` in place; biases to 0.

    Args:
        module: the network.
        init: ``"kaiming"`` (He normal, fan-in, gain for ``activation``) or
            ``"gaussian"`` (normal with mean 0 and ``std``, as in the classic image classifiers).
        activation: ``"relu"`` or ``"leaky_relu"`` (slope 0.01) for the Kaiming gain.
        std: standard deviation of the Gaussian init.

    Raises:
        ConfigError: unknown ``init``.
    """
    if init not in INITS:
        raise ConfigError(f"unknown weight init '{init}'{did_you_mean(init, INITS)}")
    for m in module.modules():
        if not isinstance(m, _CONVS):
            continue
        if init == "kaiming":
            if activation == "leaky_relu":
                nn.init.kaiming_normal_(m.weight, a=0.01, nonlinearity="leaky_relu")
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        else:
            nn.init.normal_(m.weight, mean=0.0, std=std)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
