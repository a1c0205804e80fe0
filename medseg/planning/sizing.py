"""Fit the network to the device and the time budget, from measurements.

nnU-Net shrinks the patch until a feature-map count stays under a constant calibrated for
one 8 GB GPU (``ExperimentPlanner.static_estimate_VRAM_usage``). Here the same shrink
sequence is walked with the memory the candidate *measures* on the target device (CUDA:
peak allocated; CPU: peak RSS of a fresh process), and the schedule is sized from the
iterations per second it measures. Measurements come from a :class:`Device`
(:class:`medseg.planning.probes.ProbeDevice` runs the network; tests pass a fake), so
everything here stays a pure function of the fingerprint and the measurements.

To keep probing to seconds, two cheap calibration probes fit a model — memory = c + 16 B ×
parameters + k × feature-map elements × batch, time ∝ multiply-adds × batch, refitted with
every probe — which picks the candidate to verify; only candidates predicted to run within
:data:`PROBE_MAX_S` are run, others keep the prediction and say so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from medseg.errors import ConfigError
from medseg.planning import rules
from medseg.planning.decisions import fmt, fmt_bytes, fmt_seconds
from medseg.planning.rules import Topology

#: Bytes per parameter during training: weights, gradients, SGD momentum and update temporaries.
PARAM_BYTES = 16
#: A candidate predicted to take longer than this per probe is not run (its prediction is used).
PROBE_MAX_S = 20.0
#: Below this many iterations a budget is too short to learn (see :func:`choose_for_budget`).
MIN_ITERATIONS = 2500
#: Share of the budget kept for jitter; shares for per-epoch overhead and for validation.
SAFETY = 0.95
OVERHEAD_SHARE = 0.1
VALIDATION_SHARE = 0.1
MIN_EPOCHS = 20


@dataclass(frozen=True)
class Network:
    """A candidate U-Net: a topology (strides, kernels, patch) and stage widths."""

    topology: Topology
    features: tuple[int, ...]

    @property
    def dims(self) -> int:
        return len(self.topology.patch)

    def options(self, in_channels: int | None = None, n_classes: int | None = None) -> dict[str, Any]:
        """``unet`` options (the pipeline's ``network.options``; with channels for building it)."""
        opts: dict[str, Any] = {
            "spatial_dims": self.dims,
            "n_stages": self.topology.n_stages,
            "channels_per_stage": list(self.features),
            "kernel_sizes": [list(k) for k in self.topology.kernel_sizes],
            "strides": [list(s) for s in self.topology.strides],
            "downsampling": "strided_conv",
            "deep_supervision": True,
        }
        if in_channels is not None:
            opts["in_channels"] = int(in_channels)
        if n_classes is not None:
            opts["out_channels"] = int(n_classes)
        return opts

    def with_patch(self, patch: Sequence[int]) -> Network:
        return dataclasses.replace(
            self, topology=dataclasses.replace(self.topology, patch=tuple(int(p) for p in patch))
        )


def network_for(topology: Topology, base: int = rules.BASE_FEATURES) -> Network:
    """nnU-Net's widths (``base · 2**i`` capped at 320/512) for ``topology``."""
    dims = len(topology.patch)
    return Network(topology, tuple(rules.features_per_stage(topology.n_stages, dims, base)))


def parameters(net: Network, in_channels: int, n_classes: int) -> int:
    """Trainable parameters of the medseg ``unet`` for ``net`` (counted without allocating: meta device)."""
    import torch

    from medseg.networks import build_network

    with torch.device("meta"):
        module = build_network("unet", **net.options(in_channels, n_classes))
    return int(sum(p.numel() for p in module.parameters()))


def multiply_adds(net: Network, in_channels: int, n_classes: int) -> float:
    """Convolution multiply-adds of one forward pass on one patch (the time model's regressor)."""
    top = net.topology
    size = np.array(top.patch, dtype=np.float64)
    sizes = []
    total = 0.0
    c_in = in_channels
    for stage, (stride, kernel) in enumerate(zip(top.strides, top.kernel_sizes)):
        size = np.floor(size / np.array(stride))
        sizes.append(size.copy())
        c = net.features[stage]
        k = float(np.prod(kernel))
        total += float(np.prod(size)) * k * (c_in * c + c * c)
        c_in = c
    for stage in range(top.n_stages - 1, 0, -1):
        c, skip = net.features[stage], net.features[stage - 1]
        voxels = float(np.prod(sizes[stage - 1]))
        k = float(np.prod(top.kernel_sizes[stage - 1]))
        total += voxels * c * skip + voxels * k * (2 * skip * skip + skip * skip)
    return total + float(np.prod(sizes[0])) * net.features[0] * n_classes


# ---- the device ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeRequest:
    """One probe: build ``network`` and run training steps at ``patch`` × ``batch`` on the device.

    Attributes:
        network: ``unet`` options including ``in_channels`` / ``out_channels``.
        patch: spatial patch.
        batch: batch size.
        augment: run medseg's default augmentation in the step (the trainer does, on the device).
        window_batch: also time forward passes of this many windows in eval mode (validation cost); 0: no.
        overhead: also time one epoch's bookkeeping (checkpoint save, log and curve).
        image_shape: ``(X, Y, Z)`` of a pre-processed case to draw each step's patches from, as
            the trainer's patch sampler does (None: random tensors, no sampling cost).
        training: the ``training`` options the plan writes (optimiser, lr, loss, precision, clipping):
            the probe builds and runs the Trainer's own step with them.
    """

    network: dict[str, Any]
    patch: tuple[int, ...]
    batch: int
    augment: bool = True
    window_batch: int = 0
    overhead: bool = False
    image_shape: tuple[int, ...] | None = None
    training: dict[str, Any] = field(default_factory=lambda: dict(_planned_training()))


def _planned_training() -> dict[str, Any]:
    from medseg.planning.assemble import PLANNED_TRAINING

    return PLANNED_TRAINING


@dataclass(frozen=True)
class Measurement:
    """What a probe measured (NaN where not measured).

    Attributes:
        ok: the step ran (False: out of memory, killed, timed out; see ``error``).
        peak_bytes: CUDA peak allocated, or CPU peak resident memory of the probe process.
        baseline_bytes: the same before the network was built (interpreter, torch).
        seconds_per_iteration: one training step (forward, loss, backward, optimiser).
        seconds_per_window: one eval forward of one window.
        epoch_overhead_s: checkpoint + log + curve of one epoch.
        wall_s: the probe's own wall time.
        load: the highest 1-minute load average seen while it ran (NaN: not measured).
    """

    ok: bool
    peak_bytes: float = math.nan
    baseline_bytes: float = math.nan
    seconds_per_iteration: float = math.nan
    seconds_per_window: float = math.nan
    epoch_overhead_s: float = math.nan
    wall_s: float = 0.0
    error: str = ""
    load: float = math.nan


class Device(Protocol):
    """Where the plan will train; measures candidates."""

    name: str
    kind: str

    def memory_budget(self) -> tuple[float, str]:
        """``(bytes, how it was chosen)``."""
        ...

    def measure(self, request: ProbeRequest) -> Measurement:
        """Run one probe."""
        ...


# ---- memory -------------------------------------------------------------------------------------
@dataclass
class MemoryModel:
    """Fitted to the probes so far: memory = c + 16 B × params + k × feature-map elements × batch;
    seconds per iteration ≈ multiply-adds × batch × the fastest rate any probe reached.

    With one probe, ``c`` is that probe's baseline (interpreter, torch); with two or more, the
    memory line is a least-squares fit, so fixed costs (allocator arenas, kernel workspaces)
    are not mistaken for activations. The time estimate only decides which probes to skip;
    taking the fastest rate (an optimistic guess: small probes run at a lower rate, and a
    shared machine slows some probes down) skips a probe only when even that guess is too slow.
    """

    points: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    c: float = 0.0
    k: float = 1.0
    rate: float = 0.0  # seconds per multiply-add and sample

    def add(self, m: Measurement, params: int, feature_map: int, macs: float, batch: int) -> None:
        """Add a measured probe and refit."""
        self.points.append(
            (
                m.peak_bytes - PARAM_BYTES * params,
                feature_map * batch,
                m.seconds_per_iteration,
                macs * batch,
                m.baseline_bytes,
            )
        )
        ys, xs, ts, ms, bases = (np.array(v, dtype=np.float64) for v in zip(*self.points))
        if len(set(xs.tolist())) >= 2:
            k, c = np.polyfit(xs, ys, 1)
            self.k, self.c = max(float(k), 1e-3), max(float(c), float(bases.min()))
        else:
            self.c = float(bases[-1])
            self.k = max(float((ys[-1] - self.c) / xs[-1]), 1e-3)
        self.rate = float(np.min(ts / ms))

    def memory(self, params: int, feature_map: int, batch: int) -> float:
        return self.c + PARAM_BYTES * params + self.k * feature_map * batch

    def seconds(self, macs: float, batch: int) -> float:
        return self.rate * macs * batch


@dataclass
class Sized:
    """A network sized for the device: patch, batch, and what was measured or predicted."""

    network: Network
    batch: int
    memory_bytes: float
    seconds_per_iteration: float
    measured: Measurement | None
    notes: list[str] = field(default_factory=list)


class Sizer:
    """Measures candidates on a device, with the calibrated model to skip expensive ones."""

    def __init__(
        self, device: Device, in_channels: int, n_classes: int, image_shape: tuple[int, ...] | None = None
    ) -> None:
        self.device = device
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.image_shape = image_shape
        self.model: MemoryModel | None = None
        self.probes: list[tuple[Network, int, Measurement]] = []
        self._done: dict[tuple[Any, ...], Measurement] = {}

    def _facts(self, net: Network) -> tuple[int, int, float]:
        return (
            parameters(net, self.in_channels, self.n_classes),
            rules.feature_map_size(net.topology, net.features, self.n_classes),
            multiply_adds(net, self.in_channels, self.n_classes),
        )

    def measure(self, net: Network, batch: int, **extra: Any) -> Measurement:
        """Probe ``net`` at ``batch`` (a probe already run with the same request is reused)."""
        request = ProbeRequest(
            net.options(self.in_channels, self.n_classes),
            net.topology.patch,
            batch,
            image_shape=self.image_shape,
            **extra,
        )
        key = (repr(request.network), request.patch, batch, request.window_batch, request.overhead)
        if key in self._done:
            return self._done[key]
        m = self.device.measure(request)
        self._done[key] = m
        self.probes.append((net, batch, m))
        if m.ok:
            params, fmap, macs = self._facts(net)
            if self.model is None:
                self.model = MemoryModel()
            self.model.add(m, params, fmap, macs, batch)
        return m

    def predict(self, net: Network, batch: int) -> tuple[float, float]:
        """``(bytes, seconds per iteration)`` from the model (after at least one probe)."""
        assert self.model is not None, "calibrate first"
        params, fmap, macs = self._facts(net)
        return self.model.memory(params, fmap, batch), self.model.seconds(macs, batch)

    def calibrate(self, sequence: list[Network]) -> None:
        """Probe two cheap candidates: ≤ 1/64 of the largest patch's voxels, then ≤ 1/8 (the smallest instead when
        the first took more than 1/8 of :data:`PROBE_MAX_S` a step: on a CPU a 3D nnU-Net patch's eighth needed
        8.4 GB and 81 s to probe, and no budget of minutes would train it)."""
        largest = float(np.prod(sequence[0].topology.patch))
        eighth, sixty_fourth = (
            next((n for n in sequence if np.prod(n.topology.patch) <= largest / f), sequence[-1]) for f in (8, 64)
        )
        last = self.measure(sixty_fourth, rules.MIN_BATCH)
        slow = last.ok and last.seconds_per_iteration > PROBE_MAX_S / 8
        ok = int(last.ok)
        for net in dict.fromkeys([sequence[-1] if slow else eighth, sequence[-1]]):
            if net == sixty_fourth:
                continue
            last = self.measure(net, rules.MIN_BATCH)
            ok += last.ok
            if ok == 2:
                return
        if ok:
            return
        raise ConfigError(
            f"{self.device.name}: the smallest candidate network (patch {fmt(sequence[-1].topology.patch)}) could not "
            f"run: {last.error}; give more memory (--memory-gb) or another --device"
        )


def fit_memory(sizer: Sizer, sequence: list[Network], budget: float, max_seconds: float = PROBE_MAX_S) -> Sized:
    """The first candidate of nnU-Net's shrink ``sequence`` whose training step fits ``budget`` bytes at batch 2.

    A candidate predicted to take more than ``max_seconds`` a step keeps its prediction and is not run (a time
    budget lowers it: a step that cannot give half the iterations a network needs is not worth measuring).

    Raises:
        ConfigError: not even the smallest candidate fits (names the measured bytes).
    """
    if sizer.model is None:
        sizer.calibrate(sequence)
    notes: list[str] = []
    for i, net in enumerate(sequence):
        mem, secs = sizer.predict(net, rules.MIN_BATCH)
        if mem > budget:
            continue
        if secs > max_seconds:
            notes.append(
                f"patch {fmt(net.topology.patch)}: predicted {fmt_bytes(mem)}, not run (≥ {fmt_seconds(secs)} a step)"
            )
            return Sized(net, rules.MIN_BATCH, mem, secs, None, notes)
        m = sizer.measure(net, rules.MIN_BATCH)
        if m.ok and m.peak_bytes <= budget:
            return Sized(net, rules.MIN_BATCH, m.peak_bytes, m.seconds_per_iteration, m, notes)
        what = fmt_bytes(m.peak_bytes) if m.ok else m.error
        notes.append(f"patch {fmt(net.topology.patch)}: measured {what} > budget")
        if i == len(sequence) - 1:
            break
    smallest = sequence[-1]
    mem, _ = sizer.predict(smallest, rules.MIN_BATCH)
    raise ConfigError(
        f"{sizer.device.name}: even the smallest patch {fmt(smallest.topology.patch)} needs about {fmt_bytes(mem)} "
        f"for a training step, more than the {fmt_bytes(budget)} allowed; raise --memory-gb"
    )


def fit_batch(sizer: Sizer, sized: Sized, budget: float, cap: int) -> tuple[int, str]:
    """Largest batch that fits 90 % of the memory left after batch-independent memory, within ``[2, cap]``.

    Returns:
        ``(batch, numbers for the explanation)``.
    """
    params, _, _ = sizer._facts(sized.network)
    model = sizer.model
    assert model is not None
    fixed = model.c + PARAM_BYTES * params
    per_sample = max((sized.memory_bytes - fixed) / rules.MIN_BATCH, 1.0)
    by_memory = int(0.9 * (budget - fixed) // per_sample)
    batch = max(rules.MIN_BATCH, min(by_memory, cap))
    return batch, (
        f"{fmt_bytes(per_sample)} per sample over {fmt_bytes(fixed)} fixed → {by_memory} fit 90 % of "
        f"{fmt_bytes(budget)}; 5 % of the dataset allows {cap}; at least {rules.MIN_BATCH}"
    )


# ---- time ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """Epochs × iterations that end within a budget, and what they were computed from."""

    max_epochs: int
    iterations_per_epoch: int
    val_every: int
    max_time_s: float | None
    numbers: str

    @property
    def iterations(self) -> int:
        return self.max_epochs * self.iterations_per_epoch


def default_schedule() -> Schedule:
    """nnU-Net's 1000 epochs × 250 iterations, validating every 50 epochs (20 sliding-window validations)."""
    return Schedule(
        rules.NNUNET_EPOCHS, rules.NNUNET_ITERATIONS, 50, None, "no --time-budget: nnU-Net's 1000 × 250 iterations"
    )


def budget_schedule(
    budget_s: float, setup_s: float, seconds_per_iteration: float, overhead_s: float, validation_s: float
) -> Schedule:
    """Epochs × iterations so that the learning-rate schedule ends within ``budget_s``.

    The loop gets ``95 %`` of what the one-off pre-processing (``setup_s``) leaves; epochs
    are nnU-Net's 250 iterations where that still gives ≥ 20 epochs (a smooth per-epoch
    schedule and a fine-grained stop), fewer iterations per epoch otherwise, and no more
    epochs than keep the per-epoch bookkeeping (``overhead_s``) under 10 % of the loop.
    Sliding-window validations (``validation_s`` each) are spaced to cost ≤ 10 %.
    ``max_time_s`` (``training.max_time_s``) = budget − setup: the trainer trains until it is
    used (ending with the epoch that reaches it), whether the machine is slower or faster.

    Raises:
        ConfigError: the budget does not cover the pre-processing and one epoch.
    """
    loop = (budget_s - setup_s) * SAFETY
    first = seconds_per_iteration + overhead_s + validation_s
    if loop < first:
        raise ConfigError(
            f"--time-budget {fmt_seconds(budget_s)} leaves {fmt_seconds(max(loop, 0.0))} after pre-processing "
            f"({fmt_seconds(setup_s)}), less than one iteration, epoch and validation ({fmt_seconds(first)}); "
            "give a longer --time-budget"
        )
    total = loop / seconds_per_iteration
    epochs = int(min(rules.NNUNET_EPOCHS, max(round(total / rules.NNUNET_ITERATIONS), min(MIN_EPOCHS, int(total)), 1)))
    if overhead_s > 0:
        epochs = max(1, min(epochs, int(OVERHEAD_SHARE * loop / overhead_s)))
    validations = max(1, int(VALIDATION_SHARE * loop / validation_s)) if validation_s > 0 else 1
    val_every = max(1, math.ceil(epochs / validations))
    n_val = epochs // val_every + (1 if epochs % val_every else 0)
    spend = loop - epochs * overhead_s - n_val * validation_s
    iterations = max(1, int(spend / (epochs * seconds_per_iteration)))
    numbers = (
        f"budget {fmt_seconds(budget_s)} − pre-processing {fmt_seconds(setup_s)}, 95 % → {fmt_seconds(loop)}; "
        f"{fmt(seconds_per_iteration)} s/iteration, {fmt(overhead_s)} s/epoch bookkeeping, "
        f"{n_val} validation(s) of {fmt(validation_s)} s"
    )
    return Schedule(epochs, iterations, val_every, budget_s - setup_s, numbers)


def budget_for(
    iterations: int, setup_s: float, seconds_per_iteration: float, overhead_s: float, validation_s: float
) -> float:
    """The shortest budget, in whole minutes (seconds), whose :func:`budget_schedule` gives ≥ ``iterations``."""

    def enough(minutes: int) -> bool:
        try:
            return (
                budget_schedule(60.0 * minutes, setup_s, seconds_per_iteration, overhead_s, validation_s).iterations
                >= iterations
            )
        except ConfigError:
            return False

    high = 1
    while not enough(high):
        if high > 60 * 24 * 365:  # a year: the rate is not a rate
            return math.inf
        high *= 2
    low = high // 2  # not enough (or 0)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return 60.0 * high


def validation_windows(shape: Sequence[float], patch: Sequence[int], overlap: float = 0.5) -> int:
    """Sliding windows over ``shape`` (nnU-Net's ``compute_steps_for_sliding_window``; 2D: per slice × slices)."""
    total = 1
    for s, p in zip(shape, patch):
        s = max(float(s), p)
        total *= math.ceil((s - p) / (p * (1 - overlap))) + 1
    if len(patch) == 2 and len(shape) == 3:
        total *= int(shape[2])
    return total
