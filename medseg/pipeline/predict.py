"""Prediction with a pipeline: checkpoints → networks → a :class:`medseg.inference.Predictor`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medseg.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from medseg.core.steps import Step
    from medseg.inference import Predictor
    from medseg.pipeline.config import InferenceSpec, NetworkSpec
    from medseg.pipeline.pipeline import Pipeline


def load_networks(pipeline: Pipeline, checkpoints: list[Path], device: str | torch.device = "cpu") -> list[nn.Module]:
    """Networks of ``checkpoints``, each checked against the pipeline's labels and channels.

    A network that carries its weights (TorchScript, ONNX) is built from its file(s) instead and
    takes no checkpoint.

    Raises:
        CheckpointError: no checkpoint, a missing file, or one trained for other labels/channels.
    """
    from medseg.pipeline.weights import base_dir

    return networks_for(
        pipeline.spec.network,
        checkpoints,
        where=str(pipeline.source or pipeline.spec.name),
        base=base_dir(pipeline),
        labels=pipeline.labels,
        channels=list(pipeline.spec.input.channels),
        device=device,
    )


def networks_for(
    spec: NetworkSpec,
    checkpoints: list[Path],
    *,
    where: str,
    base: Path,
    labels: dict[int, str],
    channels: list[str] | None,
    device: str | torch.device = "cpu",
    region_labels: list[int] | None = None,
) -> list[nn.Module]:
    """The networks a prediction runs (the pipeline's, or a ``crop_by_model`` stage's), checked.

    Args:
        spec: the network section.
        checkpoints: medseg checkpoints (several = fold ensemble); none for networks that carry their weights.
        where: the pipeline file (or stage) named in errors.
        base: folder that relative ``path`` options are relative to.
        labels: the labels the checkpoints must have been trained for (background excluded); ``{}`` takes
            the checkpoint's own.
        channels: the input channel names the checkpoints must have been trained on (None: any).
        region_labels: labels that must be among the checkpoint's (a stage's region), when ``labels`` is ``{}``.

    Raises:
        CheckpointError: no checkpoint, a missing file, other labels/channels, or absent region labels.
    """
    from medseg.networks import build_network
    from medseg.pipeline.weights import carried_networks, carries_weights, resolved_paths
    from medseg.training import load_checkpoint

    if carries_weights(spec.name):  # a TorchScript/ONNX file: its weights are in the file
        if checkpoints:
            raise CheckpointError(
                f"{where}: network '{spec.name}' carries its weights; remove inference.checkpoints and --checkpoint"
            )
        if labels:
            return carried_networks(spec, base, labels, channels or [], device)
        # a stage: the file's outputs are what its options declare
        return [
            build_network(spec.name, **{**spec.options, "path": str(p)}).to(device).eval()
            for p in resolved_paths(spec, base)
        ]
    if not checkpoints:
        raise CheckpointError(
            f"{where}: no checkpoint; train one with 'medseg train', then list it in inference.checkpoints or pass "
            "--checkpoint"
        )
    nets = []
    for path in checkpoints:
        expected = {0: "background", **labels} if labels else None
        ckpt = load_checkpoint(path, labels=expected, channels=channels)
        missing = sorted(set(region_labels or ()) - set(ckpt.labels))
        if missing:
            raise CheckpointError(
                f"{where}: {path} was trained for labels {sorted(v for v in ckpt.labels if v)}; labels {missing} "
                "are not among them: fix the stage's labels option"
            )
        nets.append(ckpt.build_network(device))
    return nets


def mirror_axes(pipeline: Pipeline, tta: bool | None) -> tuple[int, ...]:
    """Mirroring axes: the pipeline's, or all spatial axes with ``tta=True``, none with ``tta=False``."""
    configured = tuple(pipeline.spec.inference.mirror_axes)
    if tta is None:
        return configured
    if not tta:
        return ()
    return configured or tuple(range(pipeline.spatial_dims))


def inference_patch_size(pipeline: Pipeline) -> list[int]:
    """``inference.patch_size``, else the ``training.patch_size`` the file sets (the network was trained on it).

    Raises:
        ConfigError: neither is given.
    """
    if pipeline.spec.inference.patch_size is not None:
        return list(pipeline.spec.inference.patch_size)
    if "patch_size" in pipeline.spec.training:
        return list(pipeline.training_config.patch_size)
    raise ConfigError(
        f"{pipeline.source or pipeline.spec.name}: no window size to predict with; set inference.patch_size "
        "(usually training.patch_size)"
    )


def make_predictor(
    pipeline: Pipeline,
    checkpoints: list[Path],
    *,
    device: str = "auto",
    tta: bool | None = None,
    precision: str | None = None,
) -> Predictor:
    """A :class:`medseg.inference.Predictor` for the pipeline's inference settings.

    Args:
        pipeline: the validated pipeline.
        checkpoints: model files (several = fold ensemble).
        device: ``"auto"`` uses ``inference.device``; anything else overrides it (``--device``).
        tta: mirroring override (None: the pipeline's ``inference.mirror_axes``).
        precision: overrides ``inference.precision`` (``--precision``).

    Raises:
        ConfigError: no window size (see :func:`inference_patch_size`), or a device this machine does not have.
        CheckpointError: see :func:`load_networks`.
    """
    from medseg.core.device import resolve_device

    inf = pipeline.spec.inference
    patch_size = inference_patch_size(pipeline)
    dev = (
        resolve_device(device, option="--device")
        if device != "auto"
        else resolve_device(inf.device, option="inference.device")
    )
    return build_predictor(
        load_networks(pipeline, checkpoints, dev),
        inf,
        pipeline.preprocess,
        patch_size,
        dev,
        mirror=mirror_axes(pipeline, tta),
        precision=precision if precision is not None else inf.precision,
        postprocess=pipeline.postprocess,
        spatial_dims=pipeline.spatial_dims,
    )


def build_predictor(
    nets: list[nn.Module],
    inference: InferenceSpec,
    preprocess: list[Step],
    patch_size: list[int],
    device: torch.device,
    *,
    mirror: tuple[int, ...],
    precision: str,
    spatial_dims: int,
    postprocess: list[Step] | None = None,
) -> Predictor:
    """The :class:`~medseg.inference.Predictor` of checked networks (the pipeline's or a stage's).

    Raises:
        ConfigError: a network file with a fixed input size that ``patch_size`` does not fit (the key to
            change is named).
    """
    from medseg.inference import Predictor
    from medseg.networks.external import CarriedWeightsNetwork

    for net in nets:  # a file with a fixed input size fails here, before any case, with the key to fix
        if isinstance(net, CarriedWeightsNetwork):
            net.check_patch_size(patch_size)
    return Predictor(
        nets,
        preprocess=preprocess,
        patch_size=patch_size,
        overlap=inference.overlap,
        blend=inference.blend,
        batch_size=inference.batch_size,
        mirror_axes=mirror,
        device=device,
        precision=precision,
        postprocess=postprocess or [],
        spatial_dims=spatial_dims,
    )
