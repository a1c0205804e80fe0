"""Sliding-window inference: batched windows, Gaussian blending, mirroring, AMP.

The stitched logits are accumulated in place (``addcmul_`` with one preallocated
importance map) in float32, on the compute device when they fit, else on the CPU.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medseg.core.memory import reuse_freed_memory
from medseg.errors import ConfigError, InputError
from medseg.inference.batching import ACTIVATION_BUDGET_MIB, largest_output, windows_per_batch
from medseg.inference.windows import Blend, importance_map, window_starts

log = logging.getLogger(__name__)

#: Fraction of the free GPU memory the stitched output may take before it moves to the CPU.
DEVICE_BUFFER_FRACTION = 0.5


def network_device(network: nn.Module, default: torch.device) -> torch.device:
    """The device of the network's first parameter (``default`` for parameter-free modules)."""
    for p in network.parameters():
        return p.device
    return default


def class_argmax(scores: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.argmax(scores, dim)`` (ties: the lower class), as uint8 for up to 255 classes.

    On the CPU, a reduction over the class axis of a ``(N, K, *spatial)`` tensor is strided and slow (about
    9× a running maximum over ``K`` contiguous slices for K = 4 on a 32³ window); this keeps the running
    maximum instead for K ≤ 32. Elsewhere, or for more classes, ``torch.argmax``.
    """
    k = int(scores.shape[dim])
    if scores.device.type != "cpu" or k > 32:
        out = torch.argmax(scores, dim=dim)
        return out.to(torch.uint8) if k <= 255 else out
    best = scores.select(dim, 0).clone()
    index = torch.zeros(best.shape, dtype=torch.uint8, device=scores.device)
    for c in range(1, k):
        current = scores.select(dim, c)
        index.masked_fill_(current > best, c)
        torch.maximum(best, current, out=best)
    return index


class PassAgreement:
    """Per class, the overlap between the argmax of one pass and of the other passes (mirrors or folds).

    ``intersection[c]``, ``first[c]``, ``other[c]``: voxels (summed over windows and passes) where both
    argmaxes are ``c``, where the first pass's is, and where another pass's is; :meth:`dice` gives the
    per-class Dice between the first pass and the others.
    """

    def __init__(self) -> None:
        self.intersection = torch.zeros(0, dtype=torch.float64)
        self.first = torch.zeros(0, dtype=torch.float64)
        self.other = torch.zeros(0, dtype=torch.float64)
        self._reference: torch.Tensor | None = None
        self.passes = 0

    def _grow(self, k: int, device: torch.device) -> None:
        """Counters of at least ``k`` classes on ``device`` (where the labels lie: no copy per window)."""
        if self.intersection.device != device:
            self.intersection, self.first, self.other = (
                t.to(device) for t in (self.intersection, self.first, self.other)
            )
        if self.intersection.numel() < k:
            pad = k - self.intersection.numel()
            self.intersection, self.first, self.other = (
                torch.cat([t, torch.zeros(pad, dtype=torch.float64, device=device)])
                for t in (self.intersection, self.first, self.other)
            )

    def add(self, logits: torch.Tensor, *, first: bool) -> None:
        """Add one pass's logits or probabilities ``(N, K, *spatial)`` (``first``: the pass the others are
        compared with; it must come before them for the same windows)."""
        self.add_labels(class_argmax(logits, dim=1), int(logits.shape[1]), first=first)

    def add_labels(self, labels: torch.Tensor, k: int, *, first: bool) -> None:
        """Add one pass's argmax ``labels`` (any shape, integer) of ``k`` classes (see :meth:`add`).

        The counts stay on ``labels``' device (one bincount of class pairs per pass, no host synchronisation);
        :meth:`dice` copies them once."""
        self._grow(k, labels.device)
        if first:
            self._reference = labels
            return
        ref = self._reference
        if ref is None or ref.shape != labels.shape:
            raise InputError("PassAgreement: a compared pass came before the first pass of its windows")
        self.passes += 1
        flat_labels, flat_ref = labels.flatten(), ref.flatten()
        step = 1 << 22  # bounded int64 temporaries on a large grid
        for i in range(0, flat_labels.numel(), step):
            a, b = flat_labels[i : i + step].long(), flat_ref[i : i + step].long()
            pairs = torch.bincount(b * k + a, minlength=k * k).view(k, k).double()  # first pass's class × other's
            self.intersection += torch.diagonal(pairs)
            self.first += pairs.sum(dim=1)
            self.other += pairs.sum(dim=0)

    def dice(self) -> dict[int, float]:
        """Per class predicted by any pass: Dice between the first pass and the others (empty before a
        compared pass)."""
        if not self.passes:
            return {}
        inter, denom = self.intersection.cpu(), (self.first + self.other).cpu()
        return {c: float(2 * inter[c] / denom[c]) for c in range(int(denom.numel())) if denom[c] > 0}


def mirror_combinations(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of ``mirror_axes`` (spatial axis indices), the empty one first."""
    axes = tuple(sorted(set(int(a) for a in mirror_axes)))
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def choose_output_device(compute: torch.device, n_bytes: int, requested: str | torch.device | None) -> torch.device:
    """Where to keep the stitched output: ``requested``, or the compute device when it fits."""
    if requested not in (None, "auto"):
        return torch.device(requested)  # type: ignore[arg-type]
    if compute.type != "cuda":
        return compute
    free, _ = torch.cuda.mem_get_info(compute)
    return compute if n_bytes < DEVICE_BUFFER_FRACTION * free else torch.device("cpu")


def _check(
    image: torch.Tensor, patch_size: Sequence[int], overlap: float, batch_size: int, mirror_axes: Sequence[int]
) -> None:
    nd = len(patch_size)
    if image.ndim != nd + 2:
        raise InputError(
            f"sliding_window_inference: image must be (B, C, {', '.join('XYZ'[:nd])}) for a {nd}D patch_size "
            f"{tuple(patch_size)}, got shape {tuple(image.shape)}"
        )
    if any(int(p) < 1 for p in patch_size):
        raise ConfigError(f"patch_size must be positive, got {tuple(patch_size)}")
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    bad = [a for a in mirror_axes if not 0 <= int(a) < nd]
    if bad:
        raise ConfigError(f"mirror_axes {tuple(mirror_axes)}: spatial axes are 0..{nd - 1}, got {bad}")


@torch.no_grad()
@reuse_freed_memory()
def sliding_window_inference(
    image: torch.Tensor,
    network: nn.Module,
    *,
    patch_size: Sequence[int],
    overlap: float = 0.5,
    blend: Blend = "gaussian",
    batch_size: int = 4,
    mirror_axes: Sequence[int] = (),
    precision: torch.dtype | None = None,
    output_device: str | torch.device | None = "auto",
    activation_budget_mib: float | None = ACTIVATION_BUDGET_MIB,
    agreement: PassAgreement | None = None,
) -> torch.Tensor:
    """Run ``network`` over overlapping windows of ``image`` and blend the logits.

    Same window placement, padding and Gaussian weights as MONAI's
    ``sliding_window_inference(mode="gaussian", sigma_scale=0.125)``, so results agree.
    Runs inside :func:`medseg.core.memory.reuse_freed_memory`: the network's activations
    reuse the heap from one batch to the next instead of being re-mapped by the kernel.

    Args:
        image: ``(B, C, X, Y, Z)`` (or ``(B, C, X, Y)`` for 2D) tensor on any device; it
            is moved window by window to the network's device.
        network: maps ``(N, C, *patch_size)`` to ``(N, K, *patch_size)`` logits.
        patch_size: window size in voxels, one per spatial axis. Axes shorter than the
            window are zero-padded symmetrically and cropped back afterwards.
        overlap: fraction of a window shared with its neighbour, in ``[0, 1)``.
        blend: ``"gaussian"`` (σ = patch/8) or ``"constant"`` weights.
        batch_size: windows per forward pass; on a CPU at most as many as keep the network's largest
            output within ``activation_budget_mib`` (the first window runs alone to measure it).
        mirror_axes: spatial axes (0 = X) to mirror for test-time augmentation; all
            ``2**len(mirror_axes)`` flip combinations are averaged.
        precision: autocast dtype of the network (``torch.bfloat16``/``torch.float16``; None: float32,
            see :func:`medseg.core.precision.choose_precision`); blending stays float32.
        output_device: where the stitched logits live; ``"auto"`` keeps them on the
            compute device when they take less than half its free memory, else the CPU.
        activation_budget_mib: on a CPU, the largest activation one batch may produce (float32 MiB;
            see :mod:`medseg.inference.batching`); None: always ``batch_size`` windows.
        agreement: when given (and mirroring is on), the argmax of every mirrored pass of each window is
            compared with the unmirrored pass's (:meth:`PassAgreement.add`): the QC signal "disagreement
            between mirrored passes", at the cost of one argmax per pass.

    Returns:
        float32 logits ``(B, K, *spatial)`` with the input's spatial size, on the output device.

    Raises:
        InputError: ``image`` has the wrong number of dimensions.
        ConfigError: invalid ``patch_size``, ``overlap``, ``batch_size``, ``blend`` or ``mirror_axes``.
    """
    patch = tuple(int(p) for p in patch_size)
    _check(image, patch, overlap, batch_size, mirror_axes)
    compute = network_device(network, image.device)
    size = tuple(int(s) for s in image.shape[2:])
    pad_lo = [max(p - s, 0) // 2 for s, p in zip(size, patch)]
    pad_hi = [max(p - s, 0) - lo for s, p, lo in zip(size, patch, pad_lo)]
    if any(pad_lo) or any(pad_hi):
        pads = [v for lo, hi in zip(reversed(pad_lo), reversed(pad_hi)) for v in (lo, hi)]
        image = F.pad(image, pads, mode="constant", value=0.0)
    padded = tuple(int(s) for s in image.shape[2:])
    starts = window_starts(padded, patch, overlap)
    weights = importance_map(patch, blend, device=compute)
    flips = mirror_combinations(mirror_axes)
    window_buf = torch.empty((batch_size, image.shape[1], *patch), dtype=image.dtype, device=compute)
    if len(patch) == 3 and channels_last(network):  # windows in the weights' layout: oneDNN's fast path
        window_buf = window_buf.contiguous(memory_format=torch.channels_last_3d)

    out: torch.Tensor | None = None
    norm: torch.Tensor | None = None
    out_weights = weights
    all_jobs = [(b, s) for b in range(int(image.shape[0])) for s in starts]
    adapt = activation_budget_mib is not None and compute.type == "cpu" and batch_size > 1 and len(all_jobs) > 1
    done, per_batch = 0, 1 if adapt else batch_size
    while done < len(all_jobs):
        jobs = all_jobs[done : done + per_batch]
        done += len(jobs)
        n = len(jobs)
        for i, (b, s) in enumerate(jobs):
            window_buf[i].copy_(image[(b, slice(None), *(slice(o, o + p) for o, p in zip(s, patch)))])
        x = window_buf[:n]
        pred: torch.Tensor | None = None
        for axes in flips:
            dims = [a + 2 for a in axes]
            xin = torch.flip(x, dims) if dims else x
            autocast = torch.autocast(compute.type, dtype=precision) if precision else contextlib.nullcontext()
            with autocast, largest_output(network) if adapt else contextlib.nullcontext([]) as seen:
                y = network(xin)
            if adapt:  # the first window ran alone: size the batches of the others by its largest output
                per_batch = windows_per_batch(seen[0], n, batch_size, activation_budget_mib) if seen else batch_size
                adapt = False
            y = (torch.flip(y, dims) if dims else y).float()
            if agreement is not None and len(flips) > 1:
                agreement.add(y, first=not dims)
            pred = y if pred is None else pred.add_(y)
        assert pred is not None  # flips always holds the empty combination
        if len(flips) > 1:
            pred.div_(len(flips))
        if out is None:
            k = int(pred.shape[1])
            if tuple(pred.shape[2:]) != patch:
                raise InputError(
                    f"network output spatial size {tuple(pred.shape[2:])} differs from the window {patch}; "
                    "sliding-window inference needs a network that keeps the spatial size"
                )
            n_bytes = int(image.shape[0]) * k * int(torch.tensor(padded).prod()) * 4
            where = choose_output_device(compute, n_bytes, output_device)
            # where the stitched buffer lives matters when it cannot stay on the GPU; otherwise it is a detail
            log.log(
                logging.INFO if torch.device(where) != torch.device(compute) else logging.DEBUG,
                "sliding window: %d windows of %s, stitched logits (%d×%d×%s, %.1f MiB float32) on %s",
                len(starts) * int(image.shape[0]),
                patch,
                int(image.shape[0]),
                k,
                padded,
                n_bytes / 2**20,
                where,
            )
            out = torch.zeros((int(image.shape[0]), k, *padded), dtype=torch.float32, device=where)
            norm = torch.zeros(padded, dtype=torch.float32, device=where)
            out_weights = weights.to(where)
            for s in starts:
                norm[tuple(slice(o, o + p) for o, p in zip(s, patch))].add_(out_weights)
        pred = pred.to(out.device)
        for i, (b, s) in enumerate(jobs):
            region = (b, slice(None), *(slice(o, o + p) for o, p in zip(s, patch)))
            out[region].addcmul_(pred[i], out_weights)
    assert out is not None and norm is not None  # at least one window always runs
    out.div_(norm)
    if any(pad_lo) or any(pad_hi):
        out = out[(slice(None), slice(None), *(slice(lo, lo + s) for lo, s in zip(pad_lo, size)))]
    return out


def channels_last(network: nn.Module) -> bool:
    """True when the network's 3D convolution weights are stored channels-last."""
    for p in network.parameters():
        if p.dim() != 5:
            continue
        last, plain = p.is_contiguous(memory_format=torch.channels_last_3d), p.is_contiguous()
        if last != plain:  # one input channel or 1×1×1 kernels fit both layouts: look further
            return last
    return False
