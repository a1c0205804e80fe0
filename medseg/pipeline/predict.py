"""Prediction with a pipeline: checkpoints → networks → a :class:`medseg.inference.Predictor`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medseg.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from medseg.inference import Predictor
    from medseg.pipeline.pipeline import Pipeline


def load_networks(pipeline: Pipeline, checkpoints: list[Path], device: str | torch.device = "cpu") -> list[nn.Module]:
    """Networks of ``checkpoints``, each checked against the pipeline's labels and channels.

    A network that carries its weights (TorchScript, ONNX) is built from its file(s) instead and
    takes no checkpoint.

    Raises:
        CheckpointError: no checkpoint, a missing file, or one trained for other labels/channels.
    """
    from medseg.pipeline.weights import base_dir, carried_networks, carries_weights
    from medseg.training import load_checkpoint

    spec = pipeline.spec.network
    if carries_weights(spec.name):  # a TorchScript/ONNX file: its weights are in the file
        if checkpoints:
            raise CheckpointError(
                f"{pipeline.source or pipeline.spec.name}: network '{spec.name}' carries its weights; remove "
                "inference.checkpoints and --checkpoint"
            )
        return carried_networks(spec, base_dir(pipeline), pipeline.labels, list(pipeline.spec.input.channels), device)
    if not checkpoints:
        raise CheckpointError(
            f"{pipeline.source or pipeline.spec.name}: no checkpoint; train one with 'medseg train', then list it in "
            "inference.checkpoints or pass --checkpoint"
        )
    nets = []
    for path in checkpoints:
        ckpt = load_checkpoint(path, labels=pipeline.labels_with_background, channels=pipeline.spec.input.channels)
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
    from medseg.inference import Predictor

    inf = pipeline.spec.inference
    patch_size = inference_patch_size(pipeline)
    dev = (
        resolve_device(device, option="--device")
        if device != "auto"
        else resolve_device(inf.device, option="inference.device")
    )
    nets = load_networks(pipeline, checkpoints, dev)
    from medseg.networks.external import CarriedWeightsNetwork

    for net in nets:  # a file with a fixed input size fails here, before any case, with the key to fix
        if isinstance(net, CarriedWeightsNetwork):
            net.check_patch_size(patch_size)
    return Predictor(
        nets,
        preprocess=pipeline.preprocess,
        patch_size=patch_size,
        overlap=inf.overlap,
        blend=inf.blend,
        batch_size=inf.batch_size,
        mirror_axes=mirror_axes(pipeline, tta),
        device=dev,
        precision=precision if precision is not None else inf.precision,
        postprocess=pipeline.postprocess,
        spatial_dims=pipeline.spatial_dims,
    )
