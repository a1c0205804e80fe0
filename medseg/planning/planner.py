"""From a fingerprint (and device measurements) to a pipeline whose every value carries its reason.

The rules are nnU-Net v2's default planner (``ExperimentPlanner`` in
``nnunetv2/experiment_planning/experiment_planners/default_experiment_planner.py``, see
:mod:`medseg.planning.rules`) with what nnU-Net cannot do:

- memory *measured* on the device instead of a feature-map constant calibrated for one GPU;
- a time budget: epochs × iterations from the measured iterations per second, and a
  narrower or shallower network when the nnU-Net-size one would get too few iterations;
- label statistics used: keep-largest-component only for labels that are one component in
  every training case, a minimum component size from the smallest labelled component;
- reorientation to RAS first (nnU-Net plans on the files' voxel order);
- a finer target spacing when the smallest label's typical object would span fewer than 3 voxels
  along an axis (:mod:`medseg.planning.spacing`; with the device probes, not with ``--no-probe``, which
  reproduces nnU-Net's plan).

:func:`plan` is a function of the fingerprint, the options, a :class:`~medseg.planning.sizing.Device`
(None: nnU-Net's estimate, no probe) and a pre-processing timer; it does no file I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from medseg.errors import ConfigError
from medseg.planning import rules
from medseg.planning.decisions import Decision, fmt, fmt_bytes, fmt_seconds
from medseg.planning.estimates import busy_machine, case_seconds
from medseg.planning.fingerprint import Fingerprint
from medseg.planning.sizing import (
    MIN_ITERATIONS,
    PROBE_MAX_S,
    Device,
    Measurement,
    Network,
    Schedule,
    Sizer,
    budget_for,
    budget_schedule,
    default_schedule,
    fit_batch,
    fit_memory,
    network_for,
    validation_windows,
)
from medseg.planning.spacing import plan_spacing

ConfigName = Literal["3d", "2d"]
_AXES = "RAS"
#: Widths tried, in order, when a time budget gives the nnU-Net-size network too few iterations.
NARROWER_BASES = (16, 8)
VALIDATION_BATCH = 4


@dataclass(frozen=True)
class PlanOptions:
    """What the user asked for (``medseg plan`` options).

    Attributes:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``: where training will run (and is probed).
        memory_gb: memory budget for a training step (None: what the device has, with headroom;
            without probing: nnU-Net's 8 GB).
        time_budget_s: wall-clock budget of one training run (one fold), seconds.
        modality: per-channel modality override (one value applies to every channel).
        config: force ``"3d"`` or ``"2d"``.
        n_folds: folds of the cross-validation the schedule's validation assumes (0: training on
            all cases, no validation).
    """

    device: str = "cpu"
    memory_gb: float | None = None
    time_budget_s: float | None = None
    modality: tuple[str, ...] = ()
    config: ConfigName | None = None
    n_folds: int = 5


@dataclass
class Configuration:
    """One planned configuration (``"3d"`` or ``"2d"``), in the pipeline's axis order."""

    name: ConfigName
    axcodes: str
    spacing: list[float]
    median_shape: list[float]
    network: Network
    batch: int
    schedule: Schedule
    measured: Measurement | None
    decisions: list[Decision] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: what the user must know before training (printed as ``warning:`` lines, kept in plan.json)
    warnings: list[str] = field(default_factory=list)
    #: expected seconds to predict one median case with the planned inference (NaN: not measured)
    case_seconds: float = math.nan
    case_text: str = ""

    @property
    def patch(self) -> list[int]:
        return list(self.network.topology.patch)


@dataclass
class Plan:
    """The planned pipeline (a mapping for :meth:`medseg.pipeline.Pipeline.from_dict`) and its reasons."""

    pipeline: dict[str, Any]
    decisions: list[Decision]
    configurations: dict[str, Configuration]
    chosen: ConfigName
    fingerprint: Fingerprint
    options: PlanOptions
    probes: list[tuple[Network, int, Measurement]] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """What the user must know before training the chosen configuration (one line each)."""
        return list(self.configurations[self.chosen].warnings)


# ---- spacing and normalisation ----------------------------------------------------------------
def channel_modalities(fp: Fingerprint, override: Sequence[str]) -> list[tuple[str, str]]:
    """``(modality, where it came from)`` per channel: --modality, dataset.json, DICOM Modality, else z-score."""
    n = len(fp.channels)
    if override:
        if len(override) not in (1, n):
            raise ConfigError(
                f"--modality: give one modality or {n} (one per channel {fp.channels}), got {list(override)}"
            )
        values = list(override) * n if len(override) == 1 else list(override)
        return [(v, "--modality") for v in values]
    out = []
    for name, dicom in zip(fp.channels, fp.modalities):
        if rules.normalisation_scheme(name) != "zscore" or not dicom:
            out.append((name, f"channel name {name!r}"))
        else:
            out.append((dicom, f"DICOM Modality {dicom!r}"))
    return out


def plan_normalisation(fp: Fingerprint, modalities: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], Decision]:
    """CT: clip to foreground p0.5/p99.5 + dataset z-score; others: per-image z-score (in the nonzero mask when cropping removed > 25 %)."""
    schemes = [rules.normalisation_scheme(m) for m, _ in modalities]
    mapping = "nnU-Net get_normalization_scheme: 'CT' → CT normalisation, other names → z-score"
    if "ct" in schemes:
        if len(schemes) > 1:
            raise ConfigError(
                f"channels {fp.channels} include CT with {len(schemes)} channels: per-channel CT normalisation of "
                "multi-channel data is not available; use --modality MR (z-score every channel) or one channel"
            )
        s = fp.intensity(0)
        values = {
            k: round(s[v], 4)
            for k, v in (("low", "percentile_00_5"), ("high", "percentile_99_5"), ("mean", "mean"), ("std", "std"))
        }
        if not all(math.isfinite(v) for v in values.values()) or values["std"] <= 0:
            raise ConfigError(f"{fp.data.get('source')}: no foreground voxels to compute CT statistics from")
        return [{"percentile_clip": values}], Decision(
            "preprocess.percentile_clip",
            values,
            f"CT ({modalities[0][1]}): clip to the dataset foreground p0.5/p99.5, z-score with its mean/std "
            "(nnU-Net CTNormalization)",
            f"foreground = label > 0, every case weighted equally; median {fmt(s['median'])}, "
            f"range {fmt(s['min'])}..{fmt(s['max'])}",
        )
    use_mask = fp.median_crop_fraction < rules.NONZERO_MASK_BELOW and all(s == "zscore" for s in schemes)
    over = "nonzero" if use_mask else "image"
    steps = [] if all(s == "nonorm" for s in schemes) else [{"zscore": {"over": over}}]
    names = ", ".join(f"{m} ({why})" for m, why in modalities)
    return steps, Decision(
        "preprocess.zscore",
        over,
        f"{names}: per-image z-score ({mapping}); inside the nonzero mask when cropping to it removed > 25 %",
        f"median volume kept by crop-to-nonzero {fmt(fp.median_crop_fraction)} "
        f"({'<' if use_mask else '≥'} {rules.NONZERO_MASK_BELOW})",
    )


def plan_crop(fp: Fingerprint) -> tuple[list[dict[str, Any]], Decision]:
    """Crop to the nonzero box (nnU-Net crops every case) when it removes ≥ 5 % of some case."""
    fractions = [c["crop_fraction"] for c in fp.cases]
    smallest = min(fractions)
    if smallest < 0.95:
        return [{"crop_foreground": {}}], Decision(
            "preprocess.crop_foreground",
            "nonzero box",
            "crop to the nonzero region of channel 0 (nnU-Net crop_to_nonzero; undone on the prediction)",
            f"keeps {fmt(smallest)}..{fmt(max(fractions))} of the volume (median {fmt(fp.median_crop_fraction)})",
        )
    return [], Decision(
        "preprocess.crop_foreground",
        "none",
        "no crop: the nonzero region is (almost) the whole volume in every case",
        f"smallest fraction kept {fmt(smallest)} ≥ 0.95",
        "medseg",
    )


# ---- topology, patch and batch -----------------------------------------------------------------
def _axis_map(target: np.ndarray, name: ConfigName) -> tuple[list[int], str, list[int]]:
    """``(plan axes in RAS, axcodes, pipeline order of those axes)``.

    3D plans in nnU-Net's axis order (:func:`rules.nnunet_axes`); 2D in nnU-Net's in-plane
    axes, and the slices run along the coarsest axis, which medseg's 2D networks need last.
    """
    nn_axes = rules.nnunet_axes(target)
    if name == "3d":
        return nn_axes, "RAS", [0, 1, 2]
    slicing, inplane = nn_axes[0], nn_axes[1:]
    order = [a for a in (0, 1, 2) if a != slicing] + [slicing]
    return inplane, "".join(_AXES[a] for a in order), order


def _to_pipeline(values: Sequence[Any], plan_axes: list[int], order: list[int]) -> list[Any]:
    """Values along ``plan_axes`` (RAS axes) → the pipeline's axis order (``order`` lists RAS axes)."""
    by_ras = dict(zip(plan_axes, values))
    return [by_ras[a] for a in order if a in by_ras]


def _reorder_network(net: Network, plan_axes: list[int], order: list[int]) -> Network:
    from dataclasses import replace

    top = net.topology
    return Network(
        replace(
            top,
            patch=tuple(_to_pipeline(top.patch, plan_axes, order)),
            divisor=tuple(_to_pipeline(top.divisor, plan_axes, order)),
            pools=tuple(_to_pipeline(top.pools, plan_axes, order)),
            strides=tuple(tuple(_to_pipeline(s, plan_axes, order)) for s in top.strides),
            kernel_sizes=tuple(tuple(_to_pipeline(k, plan_axes, order)) for k in top.kernel_sizes),
        ),
        net.features,
    )


def _nnunet_estimate(
    sequence: list[Network], memory_gb: float, n_classes: int, n_voxels: float
) -> tuple[Network, int, int, str]:
    """nnU-Net's own sizing: the first patch under its feature-map reference, its batch rule. ``(net, batch, cap, text)``."""
    dims = sequence[0].dims
    for net in sequence:
        fmap = rules.feature_map_size(net.topology, net.features, n_classes)
        if rules.nnunet_memory_fits(fmap, dims, memory_gb):
            cap = rules.dataset_batch_cap(n_voxels, net.topology.patch)
            batch = max(min(rules.nnunet_batch_size(fmap, dims, memory_gb), cap), rules.MIN_BATCH)
            return net, batch, cap, f"feature maps {fmap / 1e6:.0f} M ≤ nnU-Net's reference for {memory_gb:g} GB"
    raise ConfigError(f"no patch fits nnU-Net's estimate for {memory_gb:g} GB; raise --memory-gb")


def _rungs(sequence: list[Network], fitted: Network) -> list[tuple[Network, str]]:
    """Cheaper networks for a short budget: narrower first, then half, a quarter, ... of the patch voxels.

    Time per step grows with width² × voxels, so halving the widths comes first (4× fewer
    operations); then the patch shrinks along nnU-Net's shrink order, down to 16³ voxels.
    """
    start = next(i for i, n in enumerate(sequence) if n.topology.patch == fitted.topology.patch)
    volume = float(np.prod(fitted.topology.patch))

    def smaller(frac: float) -> Network:
        return next((n for n in sequence[start:] if np.prod(n.topology.patch) <= volume * frac), sequence[-1])

    out = [(fitted, "nnU-Net widths")]
    half, quarter = smaller(0.5), smaller(0.25)
    for top, base, why in (
        (fitted, NARROWER_BASES[0], "half the widths"),
        (half, NARROWER_BASES[0], "half the widths, half the patch voxels"),
        (half, NARROWER_BASES[1], "a quarter of the widths, half the patch voxels"),
        (quarter, NARROWER_BASES[1], "a quarter of the widths, a quarter of the patch voxels"),
    ):
        cand = network_for(top.topology, base)
        if all(cand != c for c, _ in out):
            out.append((cand, why))
    frac = 0.125
    while (smallest := smaller(frac)) is not sequence[-1] and np.prod(smallest.topology.patch) >= 16**3:
        cand = network_for(smallest.topology, NARROWER_BASES[1])
        if all(cand != c for c, _ in out):
            out.append((cand, f"a quarter of the widths, 1/{round(1 / frac)} of the patch voxels"))
        frac /= 2
    return out


@dataclass
class _Context:
    fp: Fingerprint
    options: PlanOptions
    device: Device | None
    setup_s: float
    in_channels: int
    n_classes: int
    budget_bytes: float
    budget_text: str
    sizer: Sizer | None
    probes: list[tuple[Network, int, Measurement]] = field(default_factory=list)


def _size(
    ctx: _Context, name: ConfigName, target: np.ndarray, median_ras: np.ndarray, n_voxels: float
) -> Configuration:
    plan_axes, axcodes, order = _axis_map(target, name)
    spacing = [float(target[a]) for a in plan_axes]
    median = [float(median_ras[a]) for a in plan_axes]
    if ctx.device is not None:  # one model per configuration: 2D and 3D networks do not share memory or speed
        shape = tuple(max(1, round(float(median_ras[a]))) for a in order)  # a median case, as the sampler sees it
        ctx.sizer = Sizer(ctx.device, ctx.in_channels, ctx.n_classes, shape)
    # medseg's U-Net needs at least one pooling (two stages); nnU-Net's sequence ends below that
    sequence = [network_for(t) for t in rules.shrink_sequence(spacing, median) if t.n_stages >= 2]
    if not sequence:
        raise ConfigError(f"median image {fmt(median)} voxels is too small for a U-Net with one pooling (≥ 8 voxels)")
    notes: list[str] = []
    measured: Measurement | None = None
    if ctx.sizer is None:
        gb = ctx.options.memory_gb or rules.REFERENCE_GB
        net, batch, cap, mem_text = _nnunet_estimate(sequence, gb, ctx.n_classes, n_voxels)
        batch_text = f"nnU-Net's estimate for {gb:g} GB, capped at 5 % of the dataset ({cap}), at least 2"
        mem_rule = "largest patch in nnU-Net's shrink order under nnU-Net's feature-map estimate (not measured)"
        seconds = math.nan
    else:
        sized = fit_memory(ctx.sizer, sequence, ctx.budget_bytes, _slowest_step(ctx))
        net, notes = sized.network, list(sized.notes)
        cap = rules.dataset_batch_cap(n_voxels, net.topology.patch)
        batch, batch_text = fit_batch(ctx.sizer, sized, ctx.budget_bytes, cap)
        measured, seconds = sized.measured, sized.seconds_per_iteration
        how = "measured" if measured is not None else "predicted from the calibration probe"
        mem_text = f"{how} {fmt_bytes(sized.memory_bytes)} at batch 2 ≤ {ctx.budget_text}"
        mem_rule = "largest patch in nnU-Net's shrink order whose training step fits the memory budget on the device"
    schedule = default_schedule()
    ladder_text = ""
    if ctx.options.time_budget_s is not None:
        assert ctx.sizer is not None
        memory_fit = net.topology.patch
        if batch > rules.REFERENCE_BATCH[len(spacing)]:
            # a budget is spent better on more steps than on larger ones: nnU-Net's reference batch at most
            batch_text += (
                f"; the time budget caps it at nnU-Net's reference batch {rules.REFERENCE_BATCH[len(spacing)]}"
            )
            batch = rules.REFERENCE_BATCH[len(spacing)]
        net, batch, schedule, measured, ladder_text, short = _fit_time(ctx, sequence, net, batch, cap, median, name)
        seconds = measured.seconds_per_iteration if measured is not None else seconds
        if net.topology.patch != memory_fit:
            mem_rule = "smaller than the memory allows, for the time budget (see network.options.channels_per_stage)"
            mem_text = f"the memory allowed {fmt(_to_pipeline(list(memory_fit), plan_axes, order))}; " + mem_text
    elif ctx.sizer is not None and batch != rules.MIN_BATCH:
        m = ctx.sizer.measure(net, batch) if (seconds * batch / 2) <= PROBE_MAX_S else None
        if m is not None and m.ok:
            if m.peak_bytes > ctx.budget_bytes:
                batch, batch_text = (
                    rules.MIN_BATCH,
                    batch_text + f"; batch {batch} measured {fmt_bytes(m.peak_bytes)} > budget → 2",
                )
            else:
                measured = m
    final = _reorder_network(net, plan_axes, order)
    conf = Configuration(
        name, axcodes, [float(target[a]) for a in order], [float(median_ras[a]) for a in order],
        final, batch, schedule, measured, notes=notes,
    )  # fmt: skip
    if ctx.options.time_budget_s is not None and short:
        conf.warnings.append(short)
    top = final.topology
    conf.decisions += [
        Decision("training.patch_size", list(top.patch), mem_rule, f"{mem_text}; start {fmt(_initial(spacing, median, plan_axes, order))} "
                 f"= 1/spacing aspect, ≤ median shape {fmt(conf.median_shape)}, padded to ×{fmt(list(top.divisor))}",
                 "nnU-Net" if ctx.sizer is None else "medseg"),
        Decision("network.options.strides", [list(s) for s in top.strides],
                 "pool an axis while its feature map keeps ≥ 8 voxels and its spacing is within 2× of the finest "
                 "(nnU-Net get_pool_and_conv_props)", f"pools per axis {fmt(list(top.pools))} on spacing {fmt(conf.spacing)} mm"),
        Decision("network.options.kernel_sizes", [list(k) for k in top.kernel_sizes],
                 "3 along an axis once its spacing is within 2× of the finest, 1 before (thick slices)",
                 f"{top.n_stages} stages"),
        Decision("network.options.channels_per_stage", list(final.features),
                 "base · 2^stage capped at 320 (3D) / 512 (2D) (nnU-Net _features_per_stage)" if final.features[0] == rules.BASE_FEATURES
                 else "narrower than nnU-Net's (base 32) to train enough iterations in the time budget",
                 ladder_text or f"base {final.features[0]}", "nnU-Net" if not ladder_text else "medseg"),
        Decision("training.batch_size", batch, "largest batch the memory allows, ≤ 5 % of the dataset's voxels, ≥ 2", batch_text,
                 "nnU-Net" if ctx.sizer is None else "medseg"),
    ]  # fmt: skip
    timed = measured
    untimed = timed is None or not math.isfinite(timed.seconds_per_window)
    if ctx.sizer is not None and untimed and (not math.isfinite(seconds) or seconds <= PROBE_MAX_S):
        timed = ctx.sizer.measure(net, batch, window_batch=VALIDATION_BATCH)  # for the per-case estimate
    conf.case_seconds, conf.case_text = case_seconds(
        timed, conf.median_shape, conf.patch, ctx.setup_s / max(ctx.fp.n_cases, 1), ctx.options.device
    )
    if math.isfinite(seconds):
        how = "measured" if measured is not None else "estimated, not run"
        conf.notes.append(f"{fmt(seconds)} s per training iteration on {ctx.options.device} ({how})")
    if ctx.sizer is not None:  # reported in the pipeline's axis order, like everything else
        ctx.probes += [(_reorder_network(n, plan_axes, order), b, m) for n, b, m in ctx.sizer.probes]
        busy = busy_machine([m for _, _, m in ctx.sizer.probes], ctx.options.device)
        if busy:
            conf.notes.append(busy)
            conf.warnings.append(busy)
    return conf


def _initial(spacing: list[float], median: list[float], plan_axes: list[int], order: list[int]) -> list[int]:
    return _to_pipeline([int(v) for v in rules.initial_patch(spacing, median)], plan_axes, order)


def _slowest_step(ctx: _Context) -> float:
    """Seconds a training step may be predicted to take and still be probed: ``PROBE_MAX_S``, and under a time
    budget no more than gives half of ``MIN_ITERATIONS`` after pre-processing (slower ones cannot be planned)."""
    budget = ctx.options.time_budget_s
    if budget is None:
        return PROBE_MAX_S
    return min(PROBE_MAX_S, max(budget - ctx.setup_s, 0.0) / (0.5 * MIN_ITERATIONS))


def _fit_time(
    ctx: _Context, sequence: list[Network], fitted: Network, batch: int, cap: int, median: list[float], name: str
) -> tuple[Network, int, Schedule, Measurement | None, str, str]:
    """Walk the ladder until a network gets ≥ MIN_ITERATIONS in the budget (the last rung otherwise).

    Returns the network, batch, schedule, its measurement, the ladder's text for ``--explain`` and a
    warning ("" when none) when no rung reaches MIN_ITERATIONS, naming the budget that would.

    Raises:
        ConfigError: no rung fits even one iteration, epoch and validation; names the budget needed.
    """
    assert ctx.sizer is not None and ctx.options.time_budget_s is not None
    budget = ctx.options.time_budget_s
    n_val = math.ceil(ctx.fp.n_cases / ctx.options.n_folds) if ctx.options.n_folds >= 2 else 0
    tried: list[str] = []
    best: tuple[int, Network, Schedule, Measurement] | None = None
    needed = math.inf  # the shortest budget giving some measured rung MIN_ITERATIONS
    rungs = _rungs(sequence, fitted)
    for i, (net, why) in enumerate(rungs):
        _, predicted_s = ctx.sizer.predict(net, batch)
        guess = max(budget - ctx.setup_s, 0.0) / max(predicted_s, 1e-9)
        if i < len(rungs) - 1 and predicted_s > _slowest_step(ctx):
            tried.append(f"{why}: ≥ {fmt(predicted_s)} s/it at the best rate seen → ≤ {guess:.0f} iterations, not run")
            continue
        m = ctx.sizer.measure(net, batch, window_batch=VALIDATION_BATCH, overhead=True)
        if not m.ok:
            tried.append(f"{why}: probe failed ({m.error})")
            continue
        val_s = validation_windows(median, net.topology.patch) * n_val * m.seconds_per_window
        costs = (ctx.setup_s, m.seconds_per_iteration, m.epoch_overhead_s, val_s)
        needed = min(needed, budget_for(MIN_ITERATIONS, *costs))
        try:
            schedule = budget_schedule(budget, *costs)
        except ConfigError:  # a smaller rung may still fit the budget
            tried.append(f"{why}: {fmt(m.seconds_per_iteration)} s/it measured, too slow for the budget")
            continue
        tried.append(f"{why}: {fmt(m.seconds_per_iteration)} s/it measured → {schedule.iterations} iterations")
        if best is None or schedule.iterations > best[0]:
            best = (schedule.iterations, net, schedule, m)
        if schedule.iterations >= MIN_ITERATIONS:
            break
    minutes = f"{math.ceil(needed / 60)}m" if math.isfinite(needed) else ""
    need = (
        f"needs ≥ {math.ceil(needed / 60)} min on {ctx.options.device}: give --time-budget {minutes}"
        if minutes
        else f"found no budget that gives {MIN_ITERATIONS} iterations on {ctx.options.device}"
    )
    if best is None:
        raise ConfigError(
            f"--time-budget {fmt_seconds(budget)} is too short for one iteration, epoch and validation of even the "
            f"smallest {name} network on {ctx.options.device} ({tried[-1]}); {MIN_ITERATIONS} iterations {need}"
        )
    _, net, schedule, m = best
    verdict = (
        f"the first with ≥ {MIN_ITERATIONS} iterations is kept (1 % of nnU-Net's 250,000; in the 10-minute CPU "
        "accuracy study of benchmarks/RESULTS.md nnU-Net's network got 660 and found only the liver)"
    )
    warning = ""
    if schedule.iterations < MIN_ITERATIONS:
        verdict = f"none reaches {MIN_ITERATIONS} iterations, so the one with the most is kept"
        warning = (
            f"--time-budget {fmt_seconds(budget)} gives the {name} network only {schedule.iterations} training "
            f"iterations (a network needs ≥ {MIN_ITERATIONS} to learn here); {MIN_ITERATIONS} iterations {need}"
        )
    text = f"{name} time budget {fmt_seconds(budget)}: " + "; ".join(tried) + f" → {verdict}"
    return net, batch, schedule, m, text, warning


# ---- the plan ----------------------------------------------------------------------------------
def plan(
    fp: Fingerprint,
    options: PlanOptions | None = None,
    device: Device | None = None,
    setup_seconds: Callable[[list[dict[str, Any]]], float] | None = None,
) -> Plan:
    """Plan a pipeline for the fingerprinted dataset.

    Args:
        fp: the dataset fingerprint.
        options: the user's options.
        device: measures candidates (None: nnU-Net's memory estimate, no time budget).
        setup_seconds: times the one-off pre-processing of the whole dataset for the planned
            ``preprocess`` steps (needed with a time budget).

    Raises:
        ConfigError: options that cannot be met (budget too small, memory too small, ...).
    """
    from medseg.planning.assemble import assemble

    options = options or PlanOptions()
    if options.time_budget_s is not None and (device is None or setup_seconds is None):
        raise ConfigError("--time-budget needs the device probes (drop --no-probe)")
    target, spacing_decision = plan_spacing(fp, protect_small=device is not None)  # --no-probe: nnU-Net's plan
    modalities = channel_modalities(fp, options.modality)
    norm_steps, norm_decision = plan_normalisation(fp, modalities)
    crop_steps, crop_decision = plan_crop(fp)
    preprocess_head = [{"reorient": {"axcodes": "RAS"}}, *crop_steps, *norm_steps]
    setup_s = 0.0
    if options.time_budget_s is not None and setup_seconds is not None:
        setup_s = setup_seconds([*preprocess_head, rules.resample_step(target)])
    budget_bytes, budget_text = math.nan, ""
    sizer: Sizer | None = None
    if device is not None:
        budget_bytes, how = device.memory_budget()
        if options.memory_gb is not None:
            budget_bytes, how = options.memory_gb * 1e9, "--memory-gb"
        budget_text = f"{fmt_bytes(budget_bytes)} ({how})"
        sizer = Sizer(device, len(fp.channels), len(fp.labels) + 1)
    ctx = _Context(fp, options, device, setup_s, len(fp.channels), len(fp.labels) + 1, budget_bytes, budget_text, sizer)
    median_ras = np.median(rules.resampled_shapes(fp.shapes_after_crop, fp.spacings, target), axis=0)
    n_voxels = float(np.prod(median_ras) * fp.n_cases)
    configurations: dict[str, Configuration] = {}
    wanted: list[ConfigName] = [options.config] if options.config else ["3d"]
    for name in wanted:
        configurations[name] = _size(ctx, name, target, median_ras, n_voxels)
    chosen, choice = _choose(ctx, configurations, target, median_ras, n_voxels)
    decisions = [spacing_decision, crop_decision, norm_decision, choice]
    pipeline = assemble(fp, configurations[chosen], target, preprocess_head, modalities, options, decisions)
    return Plan(pipeline, decisions, configurations, chosen, fp, options, ctx.probes)


def _flat_axes(fp: Fingerprint) -> list[str]:
    """RAS axis names along which every case is one voxel thick (2D images such as PNGs)."""
    shapes = np.array([c["shape"] for c in fp.cases])
    return [_AXES[a] for a in range(3) if len(shapes) and (shapes[:, a] == 1).all()]


def _choose(
    ctx: _Context, configurations: dict[str, Configuration], target: np.ndarray, median_ras: np.ndarray, n_voxels: float
) -> tuple[ConfigName, Decision]:
    """3D unless ``--config``, the anisotropy, or the budget says 2D (nnU-Net picks by cross-validation)."""
    flat = _flat_axes(ctx.fp)
    if flat:
        if ctx.options.config == "3d":
            raise ConfigError(
                f"{ctx.fp.data.get('source')}: every image is one slice thick (axis {', '.join(flat)}), so there is no "
                "3D context to learn; drop --config 3d (2D is planned)"
            )
        configurations["2d"] = _size(ctx, "2d", target, median_ras, n_voxels)
        return "2d", Decision(
            "network.options.spatial_dims", 2,
            "2D: the images are 2D (one slice along an axis in every case); a 3D network would see a 1-voxel-deep patch",
            f"size 1 along {', '.join(flat)} in all {ctx.fp.n_cases} cases", "medseg",
        )  # fmt: skip
    if ctx.options.config:
        name = ctx.options.config
        return name, Decision("network.options.spatial_dims", 3 if name == "3d" else 2, "--config", name, "medseg")
    three = configurations["3d"]
    axis = int(np.argmax(target))
    ratio = float(target.max() / target.min())
    pools = three.network.topology.pools[axis]
    if ratio > rules.ANISO_THRESHOLD and pools < 2:
        configurations["2d"] = _size(ctx, "2d", target, median_ras, n_voxels)
        return "2d", Decision(
            "network.options.spatial_dims", 2,
            "2D when the target spacing is > 3× anisotropic and the 3D network could pool the coarse axis < 2 times "
            "(it would see little context across slices)",
            f"spacing ratio {fmt(ratio)}, axis {_AXES[axis]} pooled {pools}×", "medseg",
        )  # fmt: skip
    reason = f"spacing ratio {fmt(ratio)}, axis {_AXES[axis]} pooled {pools}×"
    if ctx.options.time_budget_s is not None and three.schedule.iterations < MIN_ITERATIONS:
        two = _size(ctx, "2d", target, median_ras, n_voxels)
        configurations["2d"] = two
        reason += f"; 3D gets {three.schedule.iterations} iterations in the budget, 2D {two.schedule.iterations}"
        if two.schedule.iterations >= MIN_ITERATIONS:
            return "2d", Decision(
                "network.options.spatial_dims", 2,
                f"2D: the time budget gives the 3D network fewer than {MIN_ITERATIONS} iterations, 2D more",
                reason, "medseg",
            )  # fmt: skip
    return "3d", Decision(
        "network.options.spatial_dims", 3,
        "3D (nnU-Net's 3d_fullres) unless the data are strongly anisotropic or the budget is too short; "
        "--config 2d plans the 2D alternative",
        reason, "medseg",
    )  # fmt: skip
