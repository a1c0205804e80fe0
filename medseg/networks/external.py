"""Networks that carry their own weights: TorchScript and ONNX files, registered like any other network.

A pipeline names one as ``network: {name: torchscript, options: {path: model.pt, ...}}`` (or
``onnx``); no checkpoint is needed because the file holds the weights. The options declare
what the file cannot say about itself:

* ``in_channels`` / ``out_channels``: the channels the file takes and returns;
* ``output``: what the channels mean: ``logits``, ``softmax`` probabilities or ``sigmoid``
  probabilities (one channel per label, background implied);
* ``label_values``: the label value of each output channel (default: channel k is label k for
  logits/softmax, label k + 1 for sigmoid);
* ``input_size``: the one spatial size the file accepts (traced models, fixed-size networks),
  or ``divisor``: what any input size must be divisible by.

The module built here returns logits ``(B, K, *S)`` with channel k = label k, whatever the file
returns, so the :class:`~medseg.inference.Predictor` treats it like a medseg network: softmax
probabilities (``log p`` for probabilities, so the softmax gives back ``p``), fold averaging,
inversion to the input grid, argmax.

Paths: absolute, relative (to the pipeline file, resolved by the pipeline), or
``package:DIST/PATH`` — a file that the installed Python distribution ``DIST`` lists in its
``RECORD`` (e.g. ``package:deepbet/data/models/model.pt``), so weights a pip package ships are
used in place. Loading is safe: a TorchScript file must be a TorchScript archive (its own
unpickler resolves only TorchScript types; a pickled ``torch.save`` model is refused), and ONNX
files are read by ONNX Runtime, which executes no Python.
"""

from __future__ import annotations

import math
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.networks.patch import check_divisible
from medseg.networks.registry import register_network

Output = Literal["logits", "softmax", "sigmoid"]
OUTPUTS: tuple[str, ...] = ("logits", "softmax", "sigmoid")
PACKAGE_PREFIX = "package:"
#: Probabilities are floored here before the log, so softmax(log p) gives back p without infinities.
_EPS = 1e-12
_DIST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def resolve_weights_path(path: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None = None) -> Path:
    """The file a network's ``path`` option names.

    Args:
        path: ``package:DIST/FILE`` (a file installed by distribution ``DIST``), an absolute path,
            or a path relative to ``base_dir``.
        base_dir: folder of the pipeline file (None: the current folder).

    Raises:
        ConfigError: the distribution is not installed or did not install that file, or the file
            does not exist (the message says how to fix it).
    """
    text = str(path)
    if text.startswith(PACKAGE_PREFIX):
        return _package_file(text)
    p = Path(text).expanduser()
    if not p.is_absolute():
        p = Path(base_dir or Path.cwd()) / p
    if not p.is_file():
        where = f" (relative to {base_dir})" if base_dir is not None and not Path(text).is_absolute() else ""
        raise ConfigError(f"{text}: no such network file{where}; fix network.options.path")
    return p


def _package_file(text: str) -> Path:
    from importlib import metadata

    dist, _, rel = text[len(PACKAGE_PREFIX) :].partition("/")
    if not _DIST.match(dist) or not rel:
        raise ConfigError(
            f"{text}: expected 'package:DISTRIBUTION/path/inside', e.g. package:deepbet/data/models/model.pt"
        )
    try:
        distribution = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"{text}: the Python package '{dist}' is not installed; install it (pip install {dist}, or the medseg "
            f"extra that brings it, e.g. pip install 'medseg[{dist}]')"
        ) from None
    files = {str(f).replace("\\", "/"): f for f in distribution.files or []}
    if rel not in files:
        near = sorted(f for f in files if f.endswith((".pt", ".onnx", ".ts", ".pth")))
        hint = f"; files it ships: {', '.join(near[:6])}" if near else ""
        raise ConfigError(f"{text}: the installed '{dist}' {distribution.version} has no file '{rel}'{hint}")
    located = Path(str(distribution.locate_file(files[rel])))
    if not located.is_file():
        raise ConfigError(f"{text}: '{dist}' lists {rel} but {located} is missing; reinstall {dist}")
    return located


# ---- the wrapper every carried-weights network is -------------------------------------------------


class CarriedWeightsNetwork(nn.Module):
    """A network whose weights live in a file, as medseg logits ``(B, K, *S)`` with channel k = label k.

    Args:
        run: ``(B, C, *S)`` tensor → the file's raw output ``(B, out_channels, *S)``.
        path: the file (for messages).
        in_channels: channels the file takes.
        out_channels: channels the file returns.
        output: ``"logits"``, ``"softmax"`` or ``"sigmoid"``.
        label_values: label value of each output channel.
        spatial_dims: 2 or 3.
        input_size: the only spatial size the file accepts, or None.
        divisor: per-axis divisor of any input size (when ``input_size`` is None).
        module: the TorchScript module when there is one (registered so ``.to(device)`` moves it).
    """

    def __init__(
        self,
        run: Callable[[torch.Tensor], torch.Tensor],
        *,
        path: Path,
        in_channels: int,
        out_channels: int,
        output: Output,
        label_values: Sequence[int],
        spatial_dims: int,
        input_size: Sequence[int] | None,
        divisor: Sequence[int],
        module: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self._run = run
        self.file = path
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.output = output
        self.label_values = tuple(int(v) for v in label_values)
        self.n_classes = max(self.label_values) + 1
        self.spatial_dims = spatial_dims
        self.input_size = tuple(int(s) for s in input_size) if input_size is not None else None
        self.divisor = tuple(int(d) for d in divisor)
        if module is not None:
            self.module = module

    @property
    def patch_divisor(self) -> tuple[int, ...]:
        """Per-axis divisor of the patch size (the fixed input size itself when there is one)."""
        return self.input_size if self.input_size is not None else self.divisor

    def check_patch_size(self, patch_size: Sequence[int]) -> tuple[int, ...]:
        """Raise :class:`ConfigError` unless the file accepts windows of ``patch_size``."""
        patch = tuple(int(p) for p in patch_size)
        if self.input_size is not None and patch != self.input_size:
            raise ConfigError(
                f"{self.file}: the network takes input of size {list(self.input_size)} only, but the patch size is "
                f"{list(patch)}; set inference.patch_size to {list(self.input_size)} (and resample to that shape "
                "first for whole-volume networks)"
            )
        return check_divisible(patch, self.divisor, str(self.file))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise ConfigError(
                f"{self.file}: the network takes {self.in_channels} input channel(s) but got {x.shape[1]}; "
                "fix network.options.in_channels or input.channels"
            )
        spatial = tuple(int(s) for s in x.shape[2:])
        if self.input_size is not None and spatial != self.input_size:
            raise ConfigError(
                f"{self.file}: the network takes input of size {list(self.input_size)}, got {list(spatial)}; "
                "set inference.patch_size to it"
            )
        try:
            y = self._run(x)
        except (RuntimeError, ValueError) as exc:  # the file's own shape checks, in its own words
            first = " ".join(str(exc).split())[:300]
            raise ConfigError(
                f"{self.file}: the network refused input of shape {tuple(x.shape)}: {first}; check "
                "network.options (in_channels, input_size) and inference.patch_size"
            ) from exc
        if not isinstance(y, torch.Tensor) or y.ndim != x.ndim or y.shape[0] != x.shape[0]:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ConfigError(
                f"{self.file}: the network returned {got} for input {tuple(x.shape)}; medseg needs one tensor "
                f"(B, channels, *spatial)"
            )
        if y.shape[1] != self.out_channels or tuple(y.shape[2:]) != spatial:
            raise ConfigError(
                f"{self.file}: the network returned shape {tuple(y.shape)} for input {tuple(x.shape)}, expected "
                f"({x.shape[0]}, {self.out_channels}, {', '.join(map(str, spatial))}); fix network.options.out_channels "
                "(it must keep the spatial size)"
            )
        return self._labels(to_logits(y, self.output))

    def _labels(self, logits: torch.Tensor) -> torch.Tensor:
        """Channels in label order; labels the file does not output get a very low logit."""
        values = (0, *self.label_values) if self.output == "sigmoid" else self.label_values  # + background
        if values == tuple(range(self.n_classes)):
            return logits
        out = logits.new_full((logits.shape[0], self.n_classes, *logits.shape[2:]), -1e4)
        out[:, list(values)] = logits
        return out


def to_logits(y: torch.Tensor, output: Output) -> torch.Tensor:
    """Raw network output → logits whose softmax is the file's probabilities.

    ``softmax``: ``log p``. ``sigmoid`` with one channel: ``[log(1 - p), log p]``; with several
    (one per label): ``[log 0.5, log p_1, ...]``, so the argmax is the most probable label above
    0.5, else background. The result has one more channel than ``y`` for ``sigmoid``.
    """
    if output == "logits":
        return y
    p = y.float()
    if output == "softmax":
        return torch.log(p.clamp_min(_EPS))
    if p.shape[1] == 1:
        return torch.cat([torch.log((1.0 - p).clamp_min(_EPS)), torch.log(p.clamp_min(_EPS))], dim=1)
    background = p.new_full((p.shape[0], 1, *p.shape[2:]), math.log(0.5))
    return torch.cat([background, torch.log(p.clamp_min(_EPS))], dim=1)


def check_declared(
    where: str,
    in_channels: int,
    out_channels: int,
    output: str,
    label_values: Sequence[int] | None,
    spatial_dims: int,
    input_size: Sequence[int] | None,
    divisor: int | Sequence[int],
) -> tuple[tuple[int, ...], tuple[int, ...] | None, tuple[int, ...]]:
    """Validate the declared options; returns ``(label_values, input_size, divisor)``."""
    if output not in OUTPUTS:
        raise ConfigError(f"{where}: output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if spatial_dims not in (2, 3):
        raise ConfigError(f"{where}: spatial_dims must be 2 or 3, got {spatial_dims}")
    if in_channels < 1 or out_channels < 1:
        raise ConfigError(f"{where}: in_channels and out_channels must be at least 1")
    first = 1 if output == "sigmoid" else 0
    if output != "sigmoid" and out_channels < 2:
        raise ConfigError(
            f"{where}: a {output} output needs at least 2 channels (background + a label); for one probability "
            "channel use output: sigmoid"
        )
    values = (
        tuple(int(v) for v in label_values) if label_values is not None else tuple(range(first, first + out_channels))
    )
    if len(values) != out_channels or len(set(values)) != len(values) or min(values) < first:
        raise ConfigError(
            f"{where}: label_values must give a distinct label value {'≥ 1 ' if first else ''}for each of the "
            f"{out_channels} output channels, got {list(values)}"
        )
    if output != "sigmoid" and 0 not in values:
        raise ConfigError(f"{where}: label_values of a {output} output must include 0 (the background channel)")
    size = None
    if input_size is not None:
        size = tuple(int(s) for s in input_size)
        if len(size) != spatial_dims or min(size) < 1:
            raise ConfigError(f"{where}: input_size needs {spatial_dims} positive sizes, got {list(input_size)}")
    div = (int(divisor),) * spatial_dims if isinstance(divisor, (int, float)) else tuple(int(d) for d in divisor)
    if len(div) != spatial_dims or min(div) < 1:
        raise ConfigError(f"{where}: divisor needs 1 or {spatial_dims} positive values, got {divisor!r}")
    return values, size, div


def _single_path(path: str | Sequence[str], name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        paths = list(path)
        if len(paths) != 1:
            raise ConfigError(
                f"{name}: build one network per file; a pipeline with several paths builds a fold ensemble"
            )
        path = paths[0]
    return resolve_weights_path(path)


# ---- TorchScript --------------------------------------------------------------------------------------


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """Load a TorchScript archive on the CPU, in eval mode.

    Raises:
        ConfigError: not a zip archive, a pickled ``torch.save`` model (refused: loading it would run
            arbitrary Python), or unreadable by ``torch.jit.load``.
    """
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ConfigError(f"{path}: not a TorchScript file (not a zip archive: {exc})") from exc
    if not any("/code/" in n for n in names):
        raise ConfigError(
            f"{path}: a pickled PyTorch file, not TorchScript; it is refused because loading it runs arbitrary "
            "Python. Export the model with torch.jit.script or torch.jit.trace and torch.jit.save"
        )
    try:
        with warnings.catch_warnings():  # torch 2.10+ calls TorchScript deprecated; its files still load
            warnings.filterwarnings("ignore", r"`torch\.jit\.load` is deprecated", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError and friends for corrupt archives
        first = " ".join(str(exc).split())[:200]
        raise ConfigError(f"{path}: torch.jit.load cannot read it ({type(exc).__name__}: {first})") from exc
    return module.eval()


def _carried_divisor(o: dict[str, Any]) -> tuple[int, ...]:
    """A carried network's size divisor: its fixed input size, else ``divisor`` per axis."""
    return tuple(o["input_size"]) if o.get("input_size") else _divisor_tuple(o)


def _carried_network(
    kind: str,
    load: Callable[[Path, tuple[int, ...] | None], tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module | None]],
    path: str | list[str],
    in_channels: int = 1,
    out_channels: int = 2,
    spatial_dims: int = 3,
    output: Output = "logits",
    label_values: list[int] | None = None,
    input_size: list[int] | None = None,
    divisor: int | list[int] = 1,
) -> nn.Module:
    """Check the declared options, load the file with ``load(file, input_size)`` → ``(run, module)``, wrap it."""
    values, size, div = check_declared(
        kind, in_channels, out_channels, output, label_values, spatial_dims, input_size, divisor
    )
    file = _single_path(path, kind)
    run, module = load(file, size)
    return CarriedWeightsNetwork(
        run,
        path=file,
        in_channels=in_channels,
        out_channels=out_channels,
        output=output,
        label_values=values,
        spatial_dims=spatial_dims,
        input_size=size,
        divisor=div,
        module=module,
    )


@register_network("torchscript", divisor=_carried_divisor, carries_weights=True)
def torchscript_network(
    path: str | list[str],
    in_channels: int = 1,
    out_channels: int = 2,
    spatial_dims: int = 3,
    output: Output = "logits",
    label_values: list[int] | None = None,
    input_size: list[int] | None = None,
    divisor: int | list[int] = 1,
) -> nn.Module:
    """A TorchScript file (``torch.jit.save``) as a medseg network; see the module docstring for the options."""

    def load(file: Path, size: tuple[int, ...] | None) -> tuple[nn.Module, nn.Module]:
        module = load_torchscript(file)
        return module, module

    return _carried_network(
        "torchscript", load, path, in_channels, out_channels, spatial_dims, output, label_values, input_size, divisor
    )


def _divisor_tuple(o: dict[str, Any]) -> tuple[int, ...]:
    d = o.get("divisor", 1)
    dims = int(o.get("spatial_dims", 3))
    return (int(d),) * dims if isinstance(d, (int, float)) else tuple(int(v) for v in d)


# ---- ONNX ---------------------------------------------------------------------------------------------


class OnnxRunner:
    """Runs an ONNX file with ONNX Runtime on float32 arrays; CUDA when the tensor is there and ORT has it."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError(
                f"{path}: ONNX networks need onnxruntime, which is not installed: pip install 'medseg[onnx]'"
            ) from None
        options = ort.SessionOptions()
        options.log_severity_level = 3  # ORT's own warnings are about graph optimisations, not the user's input
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for invalid models
            first = " ".join(str(exc).split())[:200]
            raise ConfigError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}: {first})") from exc
        self.path = path
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ConfigError(f"{path}: the ONNX graph has {len(inputs)} inputs; medseg feeds one image tensor")
        self.input = inputs[0]
        self.output_name = outputs[0].name

    def static_shape(self) -> tuple[list[int | None], list[int | None]]:
        """Input and first output shapes as the file declares them (None for symbolic axes)."""

        def dims(shape: Sequence[Any]) -> list[int | None]:
            return [d if isinstance(d, int) else None for d in shape]

        return dims(self.input.shape), dims(self.session.get_outputs()[0].shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().float().cpu().numpy()
        (y,) = self.session.run([self.output_name], {self.input.name: array})
        return torch.from_numpy(y).to(x.device)


def check_onnx_shapes(
    runner: OnnxRunner, in_channels: int, out_channels: int, spatial_dims: int, input_size: Sequence[int] | None
) -> None:
    """Compare the declared options with the shapes the ONNX file declares (before any case runs)."""
    ins, outs = runner.static_shape()
    path = runner.path
    if len(ins) != spatial_dims + 2:
        raise ConfigError(
            f"{path}: the ONNX input has {len(ins)} dimensions, a {spatial_dims}D network takes {spatial_dims + 2} "
            "(batch, channels, spatial); fix network.options.spatial_dims"
        )
    if ins[1] is not None and ins[1] != in_channels:
        raise ConfigError(f"{path}: the ONNX input has {ins[1]} channels; set network.options.in_channels: {ins[1]}")
    if len(outs) == len(ins) and outs[1] is not None and outs[1] != out_channels:
        raise ConfigError(
            f"{path}: the ONNX output has {outs[1]} channels; set network.options.out_channels: {outs[1]}"
        )
    fixed = ins[2:]
    if all(d is not None for d in fixed) and (input_size is None or list(input_size) != fixed):
        raise ConfigError(
            f"{path}: the ONNX input has the fixed size {fixed}; set network.options.input_size: {fixed} "
            "and inference.patch_size to it"
        )


@register_network("onnx", divisor=_carried_divisor, carries_weights=True)
def onnx_network(
    path: str | list[str],
    in_channels: int = 1,
    out_channels: int = 2,
    spatial_dims: int = 3,
    output: Output = "logits",
    label_values: list[int] | None = None,
    input_size: list[int] | None = None,
    divisor: int | list[int] = 1,
) -> nn.Module:
    """An ONNX file run by ONNX Runtime (``pip install 'medseg[onnx]'``); see the module docstring."""

    def load(file: Path, size: tuple[int, ...] | None) -> tuple[OnnxRunner, None]:
        runner = OnnxRunner(file)
        check_onnx_shapes(runner, in_channels, out_channels, spatial_dims, size)
        return runner, None

    return _carried_network(
        "onnx", load, path, in_channels, out_channels, spatial_dims, output, label_values, input_size, divisor
    )


def network_paths(options: dict[str, Any]) -> list[str]:
    """The ``path`` option as a list (several files = a fold ensemble)."""
    path = options.get("path")
    if path is None:
        raise ConfigError("network.options.path: required for a network that carries its weights (the file)")
    if isinstance(path, (str, os.PathLike)):
        return [str(path)]
    if not isinstance(path, (list, tuple)) or not path:
        raise ConfigError(f"network.options.path: a file or a non-empty list of files, got {path!r}")
    return [str(p) for p in path]


__all__ = [
    "OUTPUTS",
    "CarriedWeightsNetwork",
    "OnnxRunner",
    "load_torchscript",
    "network_paths",
    "onnx_network",
    "resolve_weights_path",
    "to_logits",
    "torchscript_network",
]
