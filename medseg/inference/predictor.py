"""The :class:`Predictor`: one case or many, from a file or Volume to labels on the input grid.

For each case: pre-process (steps record their history) → sliding-window logits on the
pre-processed grid → softmax (in place, chunked) → fold average → probabilities Volume
with the pre-processed history → :func:`medseg.core.steps.invert` back onto the input
grid → argmax (chunked) → post-processing steps. The result has the input's shape and
affine exactly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from medseg.core.device import resolve_device
from medseg.core.memory import reuse_freed_memory
from medseg.core.precision import choose_precision
from medseg.core.steps import Step, invert
from medseg.core.volume import Volume
from medseg.errors import ConfigError, GeometryError, InputError
from medseg.inference.sliding_window import sliding_window_inference
from medseg.inference.windows import Blend

log = logging.getLogger(__name__)

Output = Literal["labels", "probabilities"]
#: Voxels per chunk along Z for the in-place softmax and the argmax (bounded extra memory).
CHUNK_VOXELS = 1 << 22


def _z_chunks(shape: Sequence[int]) -> Iterator[slice]:
    plane = max(int(np.prod(shape[:-1])), 1)
    step = max(CHUNK_VOXELS // plane, 1)
    for z in range(0, int(shape[-1]), step):
        yield slice(z, min(z + step, int(shape[-1])))


def softmax_(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over channels of ``(K, X, Y, Z)`` in place, a Z chunk at a time; returns ``logits``."""
    for z in _z_chunks(logits.shape):
        logits[..., z] = torch.softmax(logits[..., z], dim=0)
    return logits


def argmax_labels(probabilities: torch.Tensor) -> np.ndarray:
    """Argmax over channels of ``(K, X, Y, Z)`` in Z chunks → ``(1, X, Y, Z)`` uint8 (uint16 above 256 classes)."""
    k = int(probabilities.shape[0])
    dtype = np.uint8 if k <= 256 else np.uint16
    out = np.empty((1, *probabilities.shape[1:]), dtype=dtype)
    for z in _z_chunks(probabilities.shape):
        out[0, ..., z] = torch.argmax(probabilities[..., z], dim=0).cpu().numpy().astype(dtype)
    return out


def invert_to_labels(probabilities: Volume) -> Volume:
    """Invert ``probabilities`` ``(K, X, Y, Z)`` through its history one class at a time, keeping the argmax.

    Equivalent to ``argmax(invert(probabilities))`` (ties go to the lower class) but
    only one inverted class plus a running maximum are held on the input grid instead
    of ``K`` float channels.

    Returns:
        label Volume ``(1, X, Y, Z)`` uint8 (uint16 above 256 classes) on the grid before
        the history, with an empty history.
    """
    probs = probabilities.tensor()
    k = int(probs.shape[0])
    best = labels = None
    affine = probabilities.affine
    for c in range(k):
        inverted = invert(probabilities.replace(array=probs[c : c + 1]), probabilities.history)
        channel = inverted.tensor()[0]
        if best is None or labels is None:
            best = channel.float().clone()
            labels = torch.zeros(best.shape, dtype=torch.int16 if k <= 256 else torch.int32, device=best.device)
            affine = inverted.affine
            continue
        better = channel > best
        torch.maximum(best, channel.to(best.device, best.dtype), out=best)
        labels[better] = c
        del inverted, channel, better
    if labels is None:
        raise InputError("invert_to_labels: the probabilities have no channel")
    arr = labels.cpu().numpy().astype(np.uint8 if k <= 256 else np.uint16)[None]
    return Volume(arr, affine, kind="label", meta=probabilities.meta)


class Predictor:
    """Segment volumes with one network or a fold ensemble.

    Args:
        networks: one ``nn.Module`` or several (folds) mapping ``(B, C, *spatial)`` to
            ``(B, K, *spatial)`` logits; probabilities are averaged over folds.
        preprocess: steps applied in order (each records history), or one callable
            ``Volume -> Volume``.
        patch_size: window size in voxels (3 values for 3D networks, 2 or 3 with Z = 1
            for 2D networks, which then run slice by slice over Z).
        overlap: window overlap fraction.
        blend: ``"gaussian"`` or ``"constant"``.
        batch_size: windows per forward pass.
        mirror_axes: spatial axes to mirror for test-time augmentation.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:0"``...
        precision: ``"auto"`` (bfloat16 where the CPU/GPU computes it natively, else float32),
            ``"float32"``, ``"bfloat16"`` or ``"float16"`` (GPU); see
            :func:`medseg.core.precision.choose_precision`. Only the network runs in it.
        postprocess: post-processing steps applied to the label map.
        output: ``"labels"`` (``(1, X, Y, Z)`` uint8/uint16) or ``"probabilities"``
            (``(K, X, Y, Z)`` float32, kind ``"probability"``).
        spatial_dims: 2 or 3; default: 2 when ``patch_size`` has two values.
        output_device: where stitched logits live (``"auto"``: on the device when they fit).
        stream_labels: with ``output="labels"``, invert the probabilities one class at a
            time and keep a running argmax (:func:`invert_to_labels`): only one class is
            ever held on the input grid.
    """

    def __init__(
        self,
        networks: nn.Module | Sequence[nn.Module],
        *,
        preprocess: Sequence[Step] | Callable[[Volume], Volume] = (),
        patch_size: Sequence[int],
        overlap: float = 0.5,
        blend: Blend = "gaussian",
        batch_size: int = 4,
        mirror_axes: Sequence[int] = (),
        device: str | torch.device = "auto",
        precision: str = "auto",
        postprocess: Sequence[Step] = (),
        output: Output = "labels",
        spatial_dims: int | None = None,
        output_device: str | torch.device = "auto",
        stream_labels: bool = True,
    ) -> None:
        nets = [networks] if isinstance(networks, nn.Module) else list(networks)
        if not nets or not all(isinstance(n, nn.Module) for n in nets):
            raise ConfigError(
                f"Predictor: networks must be a torch.nn.Module or a non-empty list of them, got {networks!r}"
            )
        if output not in ("labels", "probabilities"):
            raise ConfigError(f"Predictor: output must be 'labels' or 'probabilities', got {output!r}")
        dims = spatial_dims if spatial_dims is not None else (2 if len(patch_size) == 2 else 3)
        if dims not in (2, 3):
            raise ConfigError(f"Predictor: spatial_dims must be 2 or 3, got {spatial_dims!r}")
        patch = tuple(int(p) for p in patch_size)
        if dims == 2 and len(patch) == 3:
            if patch[2] != 1:
                raise ConfigError(f"Predictor: a 2D network takes a patch (X, Y) or (X, Y, 1), got {patch}")
            patch = patch[:2]
        if len(patch) != dims:
            raise ConfigError(f"Predictor: patch_size {tuple(patch_size)} does not fit a {dims}D network")
        for step in postprocess:
            if getattr(step, "stage", "postprocess") != "postprocess":
                raise ConfigError(f"Predictor: '{step.name}' is a {step.stage} step, not a post-processing step")
        self.device = resolve_device(device)
        self.networks = [n.to(self.device).eval() for n in nets]
        self.preprocess = preprocess
        self.patch_size = patch
        self.spatial_dims = dims
        self.overlap = overlap
        self.blend: Blend = blend
        self.batch_size = batch_size
        self.mirror_axes = tuple(mirror_axes)
        self.precision = choose_precision(precision, self.device)
        log.info("network precision: %s", self.precision.reason)
        self.postprocess = tuple(postprocess)
        self.output: Output = output
        self.output_device = output_device
        self.stream_labels = stream_labels

    # ---- stages -------------------------------------------------------------
    def run_preprocess(self, volume: Volume) -> Volume:
        """Apply the pre-processing (steps in order, or the callable)."""
        if callable(self.preprocess) and not isinstance(self.preprocess, Sequence):
            return self.preprocess(volume)
        for step in self.preprocess:
            volume = step(volume)
        return volume

    def logits(self, image: torch.Tensor, network: nn.Module) -> torch.Tensor:
        """Stitched logits ``(K, X, Y, Z)`` of one network on ``(C, X, Y, Z)``."""
        kw = dict(
            patch_size=self.patch_size,
            overlap=self.overlap,
            blend=self.blend,
            batch_size=self.batch_size,
            mirror_axes=self.mirror_axes,
            precision=self.precision.dtype,
            output_device=self.output_device,
        )
        if self.spatial_dims == 3:
            return sliding_window_inference(image[None], network, **kw)[0]  # type: ignore[arg-type]
        slices = image.permute(3, 0, 1, 2)  # (Z, C, X, Y): slices as a batch
        out = sliding_window_inference(slices, network, **kw)  # type: ignore[arg-type]
        return out.permute(1, 2, 3, 0).contiguous()

    def probabilities(self, pre: Volume) -> torch.Tensor:
        """Fold-averaged softmax probabilities ``(K, X, Y, Z)`` on the pre-processed grid."""
        image = pre.tensor(self.device, torch.float32)
        total: torch.Tensor | None = None
        for network in self.networks:
            p = softmax_(self.logits(image, network))
            total = p if total is None else total.add_(p.to(total.device))
        assert total is not None  # at least one network (checked in __init__)
        if len(self.networks) > 1:
            total.div_(len(self.networks))
        return total

    # ---- public -------------------------------------------------------------
    @reuse_freed_memory()
    def predict(self, volume_or_path: Volume | str | os.PathLike[str]) -> Volume:
        """Segment one case; the result lies on the input's grid exactly.

        Args:
            volume_or_path: a Volume or anything :func:`medseg.io.read` reads.

        Returns:
            ``output="labels"``: label Volume ``(1, X, Y, Z)`` uint8/uint16 (after
            post-processing); ``output="probabilities"``: ``(K, X, Y, Z)`` float32.

        Raises:
            InputError: unreadable input, or a network/patch that does not fit it.
            GeometryError: the history did not bring the prediction back onto the input grid.
        """
        if isinstance(volume_or_path, Volume):
            volume = volume_or_path
        else:
            from medseg.io import read

            volume = read(volume_or_path)
        if self.spatial_dims == 3 and volume.spatial_shape[2] == 1 and self.patch_size[2] > 1:
            log.info("2D input with a 3D network: Z is padded to the patch")
        return self.predict_preprocessed(volume, self.run_preprocess(volume))

    @reuse_freed_memory()
    def predict_preprocessed(self, volume: Volume, pre: Volume) -> Volume:
        """The part of :meth:`predict` after pre-processing (the batch engine overlaps the two).

        Args:
            volume: the input as read (its grid is where the result lands).
            pre: ``volume`` after :meth:`run_preprocess` (history included).
        """
        if not isinstance(pre, Volume):
            raise InputError(f"preprocess returned {type(pre).__name__}, expected a Volume")
        probs = Volume(self.probabilities(pre), pre.affine, kind="probability", meta=pre.meta, history=pre.history)
        meta = {**volume.meta}
        if self.output == "labels" and self.stream_labels:
            streamed = invert_to_labels(probs)
            if not streamed.grid.matches(volume.grid, atol=1e-6):
                raise _not_back(volume, streamed.spatial_shape)
            labels = streamed.numpy()
        else:
            back = invert(probs, pre.history)
            if not back.grid.matches(volume.grid, atol=1e-6):
                raise _not_back(volume, back.spatial_shape)
            if self.output == "probabilities":
                return Volume(back.tensor().float().cpu(), volume.affine, kind="probability", meta=meta)
            labels = argmax_labels(back.tensor())
            del back
        del probs
        out = Volume(labels, volume.affine, kind="label", meta=meta)
        for step in self.postprocess:
            out = step(out)
        return out

    def predict_many(self, items: Iterable[Volume | str | os.PathLike[str]]) -> Iterator[Volume]:
        """Segment cases one after another (lazily), each on its own input grid."""
        for item in items:
            yield self.predict(item)


def _not_back(volume: Volume, shape: Sequence[int]) -> GeometryError:
    return GeometryError(
        f"{volume.meta.get('source') or 'input'}: inverted prediction grid {tuple(shape)} does not match "
        f"the input grid {volume.spatial_shape}; a pre-processing step's inverse is incomplete"
    )
