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
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from medseg.core.device import resolve_device
from medseg.core.memory import reuse_freed_memory
from medseg.core.precision import choose_precision
from medseg.core.steps import Step, invert, invert_region, regions_invertible
from medseg.core.volume import Volume
from medseg.errors import ConfigError, GeometryError, InputError
from medseg.inference.sliding_window import PassAgreement, sliding_window_inference
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

    Equivalent to ``argmax(invert(probabilities))`` (ties go to the lower class) but only one inverted
    class plus a running maximum are held on the input grid instead of ``K`` float channels, and only
    inside the box that can hold foreground: an input voxel whose interpolation reads nothing but
    background-winning voxels of the prediction is background, so outside the box around the
    foreground (one voxel wider, mapped through the history by world position) nothing is computed.
    Histories with a step that cannot invert a part (:meth:`medseg.core.steps.Step.restrict`) are
    inverted whole.

    Returns:
        label Volume ``(1, X, Y, Z)`` uint8 (uint16 above 256 classes) on the grid before
        the history, with an empty history.
    """
    probs = probabilities.tensor()
    k = int(probs.shape[0])
    if k == 0:
        raise InputError("invert_to_labels: the probabilities have no channel")
    dtype = np.uint8 if k <= 256 else np.uint16
    history = probabilities.history

    def one_class(c: int) -> Volume:
        return probabilities.replace(array=probs[c : c + 1])

    if not regions_invertible(history):  # a step that cannot invert a part: the whole grid
        whole, affine = _running_argmax(k, lambda c: invert(one_class(c), history))
        return Volume(whole.astype(dtype)[None], affine, kind="label", meta=probabilities.meta)
    shape, affine = first_grid(probabilities)
    labels = np.zeros((1, *shape), dtype=dtype)
    box = foreground_box(probs, probabilities.affine, shape, affine)
    if box is not None:
        part, _ = _running_argmax(k, lambda c: invert_region(one_class(c), history, box))
        labels[(0, *(slice(a, b) for a, b in box))] = part.astype(dtype)
    return Volume(labels, affine, kind="label", meta=probabilities.meta)


def _running_argmax(k: int, back: Callable[[int], Volume]) -> tuple[np.ndarray, np.ndarray]:
    """Argmax over the ``k`` classes of ``back(c)`` (each class inverted in turn) and the grid's affine."""
    best = labels = affine = None
    for c in range(k):
        inverted = back(c)
        channel = inverted.tensor()[0]
        if best is None or labels is None:
            best = channel.float().clone()
            labels = torch.zeros(best.shape, dtype=torch.int32, device=best.device)
            affine = inverted.affine
            continue
        better = channel > best
        torch.maximum(best, channel.to(best.device, best.dtype), out=best)
        labels[better] = c
        del inverted, channel, better
    if labels is None or affine is None:
        raise InputError("invert_to_labels: the probabilities have no channel")
    return labels.cpu().numpy(), affine


def first_grid(volume: Volume) -> tuple[tuple[int, int, int], np.ndarray]:
    """The grid before ``volume``'s history (its own grid when no step changed the grid)."""
    for entry in volume.history:
        if "in_shape" in entry.state:
            return tuple(int(s) for s in entry.state["in_shape"]), np.asarray(entry.state["in_affine"])  # type: ignore[return-value]
    return volume.spatial_shape, volume.affine


def foreground_box(
    probs: torch.Tensor, affine: np.ndarray, shape: tuple[int, int, int], target_affine: np.ndarray
) -> tuple[tuple[int, int], ...] | None:
    """The box of the grid ``(shape, target_affine)`` outside which the inverted argmax is background.

    Candidate foreground = voxels of ``probs`` ``(K, X, Y, Z)`` whose background probability is below
    1/2 (where it is at least 1/2 it wins, and so does every interpolation of such voxels: it is a
    convex combination); their bounding box, one voxel wider (the linear interpolation stencil), is
    mapped by world position onto the target grid and widened by one voxel for rounding. None when no
    voxel is a candidate.
    """
    if probs.shape[0] < 2:
        return None
    candidate = probs[0] < 0.5
    plane = candidate.any(dim=2)  # (X, Y)
    if not bool(plane.any()):
        return None
    hits = [plane.any(dim=1), plane.any(dim=0), candidate.any(dim=1).any(dim=0)]
    lo, hi = [], []
    for hit in hits:
        index = torch.nonzero(hit).flatten()
        lo.append(int(index[0]) - 1)
        hi.append(int(index[-1]) + 1)
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    landed = (np.linalg.solve(np.asarray(target_affine, dtype=np.float64), affine) @ corners.T)[:3]
    low = np.floor(landed.min(axis=1)).astype(int) - 1
    high = np.ceil(landed.max(axis=1)).astype(int) + 2
    box = tuple((max(0, int(a)), min(int(n), int(b))) for a, b, n in zip(low, high, shape))
    return box if all(b > a for a, b in box) else None


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
        batch_size: windows per forward pass (on a CPU at most as many as keep one batch's largest
            activation within :data:`medseg.inference.batching.ACTIVATION_BUDGET_MIB`, see
            :func:`medseg.inference.sliding_window_inference`).
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

    def logits(
        self, image: torch.Tensor, network: nn.Module, *, agreement: PassAgreement | None = None
    ) -> torch.Tensor:
        """Stitched logits ``(K, X, Y, Z)`` of one network on ``(C, X, Y, Z)`` (``agreement``: collects the
        agreement between mirrored passes, see :func:`sliding_window_inference`)."""
        kw = dict(
            agreement=agreement,
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

    def probabilities(
        self,
        pre: Volume,
        *,
        mirrors: PassAgreement | None = None,
        folds: PassAgreement | None = None,
        fold_uncertainty: list[dict[str, dict[str, float]]] | None = None,
    ) -> torch.Tensor:
        """Fold-averaged softmax probabilities ``(K, X, Y, Z)`` on the pre-processed grid.

        Args:
            pre: the pre-processed case.
            mirrors: collects the agreement between mirrored passes (when ``mirror_axes`` is set).
            folds: collects the agreement of every fold's argmax with the first fold's (with several
                networks; one uint8 argmax per fold, in Z chunks).
            fold_uncertainty: with several networks, receives each fold's own uncertainty measurements
                (:func:`medseg.qc.measure.probability_measurements`, taken from the argmax it computes anyway
                for ``folds``): the numbers a single model's out-of-fold prediction gives, so QC compares like
                with like.
        """
        from medseg.qc.measure import probability_measurements

        image = pre.tensor(self.device, torch.float32)
        total: torch.Tensor | None = None
        for i, network in enumerate(self.networks):
            p = softmax_(self.logits(image, network, agreement=mirrors))
            if folds is not None and len(self.networks) > 1:
                if fold_uncertainty is not None:
                    labels, uncertainty = probability_measurements(p)
                    fold_uncertainty.append(uncertainty)
                else:
                    labels = argmax_labels(p)[0]
                folds.add_labels(torch.from_numpy(labels), int(p.shape[0]), first=i == 0)
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
    def predict_preprocessed(
        self, volume: Volume, pre: Volume, *, measurements: dict[str, Any] | None = None
    ) -> Volume:
        """The part of :meth:`predict` after pre-processing (the batch engine overlaps the two).

        Args:
            volume: the input as read (its grid is where the result lands).
            pre: ``volume`` after :meth:`run_preprocess` (history included).
            measurements: when given, filled with the case's quality-control measurements, taken from the
                probabilities on the network grid before inversion
                (:func:`medseg.qc.measure.prediction_measurements`), and ``seconds`` (their cost, s).
        """
        if not isinstance(pre, Volume):
            raise InputError(f"preprocess returned {type(pre).__name__}, expected a Volume")
        mirrors, folds = (PassAgreement(), PassAgreement()) if measurements is not None else (None, None)
        per_fold: list[dict[str, dict[str, float]]] = []
        probs = self.probabilities(pre, mirrors=mirrors, folds=folds, fold_uncertainty=per_fold)
        probs = Volume(probs, pre.affine, kind="probability", meta=pre.meta, history=pre.history)
        if measurements is not None and mirrors is not None and folds is not None:
            from medseg.qc.measure import prediction_measurements

            t0 = time.perf_counter()
            measured = prediction_measurements(pre.tensor(), probs.tensor(), pre.voxel_volume_mm3)
            measured["agreement"] = {"mirrors": _str_keys(mirrors.dice()), "folds": _str_keys(folds.dice())}
            if per_fold:
                measured["fold_uncertainty"] = fold_mean(per_fold)
            measurements.update(measured)
            measurements["seconds"] = time.perf_counter() - t0
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


def fold_mean(per_fold: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per label, the mean over folds of each fold's uncertainty measurement (a fold that did not predict
    the label counts 0 for ``soft_dice``, ``max_softmax`` and ``margin``, 1 for the entropies)."""
    absent = {"soft_dice": 0.0, "max_softmax": 0.0, "margin": 0.0, "entropy": 1.0, "border_entropy": 1.0}
    labels = sorted({v for fold in per_fold for v in fold}, key=int)
    return {
        v: {m: float(sum(f.get(v, {}).get(m, a) for f in per_fold) / len(per_fold)) for m, a in absent.items()}
        for v in labels
    }


def _str_keys(values: dict[int, float]) -> dict[str, float]:
    return {str(k): v for k, v in values.items()}


def _not_back(volume: Volume, shape: Sequence[int]) -> GeometryError:
    return GeometryError(
        f"{volume.meta.get('source') or 'input'}: inverted prediction grid {tuple(shape)} does not match "
        f"the input grid {volume.spatial_shape}; a pre-processing step's inverse is incomplete"
    )
