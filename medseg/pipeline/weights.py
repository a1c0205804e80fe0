"""Networks that carry their weights, seen from a pipeline: options filled in, paths resolved, files hashed.

A pipeline whose ``network`` is a TorchScript or ONNX file (see :mod:`medseg.networks.external`)
needs no checkpoint: :func:`carried_networks` builds it (several ``path`` entries = a fold
ensemble). Relative paths are relative to the pipeline file. :func:`weight_files` lists every
file whose bytes decide the prediction (the network's and those of steps that run a network,
such as ``crop_by_model``), so the batch fingerprint covers them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from medseg.pipeline.config import NetworkSpec
    from medseg.pipeline.pipeline import Pipeline


def base_dir(pipeline: Pipeline) -> Path:
    """The folder relative paths of ``pipeline`` are relative to (its file's folder, else the current one)."""
    return pipeline.source.parent if pipeline.source is not None else Path.cwd()


def carries_weights(name: str) -> bool:
    """True when the registered network ``name`` is a file with its weights (no checkpoint needed)."""
    from medseg.networks import network_info

    return bool(network_info(name).carries_weights)


def filled_options(
    spec: NetworkSpec, labels: dict[int, str], channels: list[str], where: str = "network"
) -> dict[str, Any]:
    """The network options with ``in_channels``/``out_channels`` filled in from the pipeline's input.

    ``out_channels`` defaults to the number of ``label_values`` when given, else to background + the
    highest label (``softmax``/``logits``) or the highest label (``sigmoid``, no background channel).

    Raises:
        ConfigError: the labels the network outputs differ from ``input.labels``.
    """
    options = dict(spec.options)
    options.setdefault("in_channels", len(channels))
    output = options.get("output", "logits")
    values = options.get("label_values")
    n_classes = max(labels) + 1
    if "out_channels" not in options:
        options["out_channels"] = len(values) if values else (n_classes - 1 if output == "sigmoid" else n_classes)
    first = 1 if output == "sigmoid" else 0
    declared = [int(v) for v in values] if values else list(range(first, first + int(options["out_channels"])))
    if set(declared) - {0} != set(labels):
        raise ConfigError(
            f"{where}.options: the network outputs labels {sorted(set(declared) - {0})} but input.labels names "
            f"{sorted(labels)}; make them agree (network.options.label_values gives each output channel's label)"
        )
    return options


def resolved_paths(spec: NetworkSpec, base: Path, where: str = "network") -> list[Path]:
    """The files of a carried-weights network spec, resolved (``package:``, absolute, or relative to ``base``)."""
    from medseg.networks.external import network_paths, resolve_weights_path

    try:
        return [resolve_weights_path(p, base) for p in network_paths(spec.options)]
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith(f"{where}.") else f"{where}.options.path: {text}") from exc


def check_network(
    spec: NetworkSpec, base: Path, labels: dict[int, str], channels: list[str], where: str = "network"
) -> None:
    """Validate a carried-weights network section without loading it: known options, files present,
    declared channels and labels consistent with the pipeline.

    Raises:
        ConfigError: the first problem, naming the key to fix.
    """
    from medseg.core.registry import check_options
    from medseg.networks.external import check_declared
    from medseg.networks.registry import NETWORKS

    options = filled_options(spec, labels, channels, where)
    check_options(f"{where}: network '{spec.name}'", NETWORKS.get(spec.name), options)
    resolved_paths(spec, base, where)
    try:
        check_declared(
            f"{where}.options",
            int(options["in_channels"]),
            int(options["out_channels"]),
            str(options.get("output", "logits")),
            options.get("label_values"),
            int(options.get("spatial_dims", 3)),
            options.get("input_size"),
            options.get("divisor", 1),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}.options: {exc}") from exc


def carried_networks(
    spec: NetworkSpec,
    base: Path,
    labels: dict[int, str],
    channels: list[str],
    device: str | torch.device = "cpu",
    where: str = "network",
) -> list[nn.Module]:
    """Build the network of each file of ``spec`` (one = a single model, several = a fold ensemble).

    Returns:
        Modules in eval mode on ``device`` mapping ``(B, C, *S)`` to logits ``(B, K, *S)``, K = background
        + highest label.
    """
    from medseg.networks import build_network

    options = filled_options(spec, labels, channels, where)
    nets = []
    for path in resolved_paths(spec, base, where):
        net = build_network(spec.name, **{**options, "path": str(path)})
        nets.append(net.to(device).eval())
    return nets


def weight_files(pipeline: Pipeline) -> list[Path]:
    """Every file of carried weights the pipeline's prediction depends on (network, then steps), resolved."""
    files: list[Path] = []
    if carries_weights(pipeline.spec.network.name):
        files += resolved_paths(pipeline.spec.network, base_dir(pipeline))
    for step in pipeline.preprocess:
        get = getattr(step, "weight_files", None)
        if callable(get):
            files += list(get())
    return files
