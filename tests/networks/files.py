"""Small networks saved as TorchScript and ONNX files inside the tests (nothing is downloaded)."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn


class Threshold(nn.Module):
    """Class 1 where channel 0 is above ``threshold``: a 1×1×1 convolution, then the chosen output.

    ``output="logits"``/``"softmax"``: 2 channels; ``"sigmoid"``: 1 channel (foreground probability).
    """

    def __init__(self, threshold: float = 100.0, output: str = "logits", in_channels: int = 1) -> None:
        super().__init__()
        self.output = output
        self.conv = nn.Conv3d(in_channels, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[1, 0] = 0.1
            self.conv.bias.copy_(torch.tensor([0.0, -0.1 * threshold]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.output == "softmax":
            return torch.softmax(y, dim=1)
        if self.output == "sigmoid":
            return torch.sigmoid(y[:, 1:2] - y[:, 0:1])
        return y


def save_torchscript(module: nn.Module, path: Path) -> Path:
    """``torch.jit.script`` + ``torch.jit.save`` (torch 2.10+ calls TorchScript deprecated; files still load)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        torch.jit.save(torch.jit.script(module.eval()), str(path))
    return path


def save_onnx(module: nn.Module, path: Path, example: torch.Tensor) -> Path:
    """Export with dynamic batch and spatial axes (torch's own export warnings are not the test's concern)."""
    dim = torch.export.Dim.DYNAMIC
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(),
            (example,),
            None,
            dynamo=True,
            input_names=["image"],
            output_names=["output"],
            dynamic_shapes=({0: dim, 2: dim, 3: dim, 4: dim},),
            verbose=False,
        )
    program.save(str(path))
    return path
