"""nnU-Net v2's planning rules, reproduced as pure functions (no I/O, no device).

Each function names the nnU-Net v2 function (``nnunetv2/experiment_planning/...``, version
2.8.1) whose rule it reproduces, and keeps its arithmetic, including its axis conventions,
so that ``medseg plan --no-probe`` gives nnU-Net's patch, topology and batch (checked by
``benchmarks/plan_vs_nnunet.py``). What medseg does differently lives in
:mod:`medseg.planning.planner`, not here.

Axis order: medseg's fingerprint stores per-axis values in RAS order ``(X, Y, Z)``.
nnU-Net reads NIfTI with SimpleITK, so its arrays are ``(Z, Y, X)``, and then transposes
them so that the coarsest axis comes first (``determine_transpose``). :func:`nnunet_axes`
gives that order; the planner computes in it (ties break as in nnU-Net) and maps back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: ``nnunetv2/configuration.py``: an axis is anisotropic when its spacing is > 3× the others.
ANISO_THRESHOLD = 3.0
#: ``ExperimentPlanner.UNet_featuremap_min_edge_length``: the bottleneck keeps at least 4 voxels.
FEATUREMAP_MIN_EDGE = 4
#: ``UNet_base_num_features`` and ``UNet_max_features_3d`` / ``_2d``.
BASE_FEATURES = 32
MAX_FEATURES = {3: 320, 2: 512}
#: ``UNet_reference_val_3d/2d``: feature-map elements that fit ``REFERENCE_GB`` at ``REFERENCE_BATCH``.
REFERENCE_FEATURE_MAP = {3: 560_000_000, 2: 85_000_000}
REFERENCE_GB = 8.0
REFERENCE_BATCH = {3: 2, 2: 12}
#: ``UNet_min_batch_size`` and ``max_dataset_covered`` (a batch sees at most 5 % of the dataset).
MIN_BATCH = 2
MAX_DATASET_COVERED = 0.05
#: ``determine_normalization_scheme_and_whether_mask_is_used_for_norm``: crop to < 3/4 → mask.
NONZERO_MASK_BELOW = 0.75
#: nnU-Net's default schedule (``nnUNetTrainer``: 1000 epochs of 250 iterations).
NNUNET_EPOCHS = 1000
NNUNET_ITERATIONS = 250


@dataclass(frozen=True)
class Topology:
    """A U-Net topology for one patch (``get_pool_and_conv_props``' result).

    Attributes:
        strides: per stage, the downsampling per axis (stage 0 is all ones).
        kernel_sizes: per stage, the conv kernel per axis (1 along axes still too coarse).
        patch: the patch, padded up to a multiple of :attr:`divisor`.
        divisor: what each patch axis must be divisible by (2 ** pools along that axis).
        pools: number of poolings per axis.
    """

    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    patch: tuple[int, ...]
    divisor: tuple[int, ...]
    pools: tuple[int, ...]

    @property
    def n_stages(self) -> int:
        return len(self.strides)


def nnunet_axes(spacing_ras: Sequence[float]) -> list[int]:
    """RAS axes in nnU-Net's order: reversed (SimpleITK's ``Z, Y, X``), then the coarsest first.

    ``ExperimentPlanner.determine_transpose``: ``argmax`` of the target spacing comes first,
    the other axes keep their order; ties go to the first of ``(Z, Y, X)``.
    """
    reversed_axes = [2, 1, 0]
    sp = [float(spacing_ras[a]) for a in reversed_axes]
    first = int(np.argmax(sp))
    return [reversed_axes[first]] + [a for i, a in enumerate(reversed_axes) if i != first]


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, dict[str, object]]:
    """Per-axis median spacing, or the 10th percentile along a strongly anisotropic axis.

    ``ExperimentPlanner.determine_fullres_target_spacing``: when the coarsest median
    spacing is > 3× the others' largest AND that axis has > 3× fewer voxels (median shape
    after cropping), its target becomes the 10th percentile of its spacings, but never finer
    than the other axes' largest (+1e-5, as nnU-Net).

    Args:
        spacings: ``(cases, axes)`` mm.
        shapes: ``(cases, axes)`` voxels after crop-to-nonzero.

    Returns:
        ``(target mm per axis, numbers)`` — ``numbers`` holds the medians, the anisotropy
        ratios and whether the rule fired, for the explanation.
    """
    spacings = np.asarray(spacings, dtype=np.float64)
    target = np.percentile(spacings, 50, axis=0)
    median_shape = np.percentile(np.asarray(shapes, dtype=np.float64), 50, axis=0)
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    other_spacing = max(target[i] for i in others)
    other_size = min(median_shape[i] for i in others)
    aniso_spacing = bool(target[worst] > ANISO_THRESHOLD * other_spacing)
    aniso_voxels = bool(median_shape[worst] * ANISO_THRESHOLD < other_size)
    numbers: dict[str, object] = {
        "median_spacing": target.tolist(),
        "median_shape": median_shape.tolist(),
        "coarsest_axis": worst,
        "spacing_ratio": float(target[worst] / other_spacing),
        "voxel_ratio": float(other_size / max(median_shape[worst], 1e-9)),
        "anisotropic": aniso_spacing and aniso_voxels,
    }
    if aniso_spacing and aniso_voxels:
        p10 = float(np.percentile(spacings[:, worst], 10))
        numbers["p10"] = p10
        if p10 < other_spacing:
            p10 = max(other_spacing, p10) + 1e-5
        target = target.copy()
        target[worst] = p10
    return target, numbers


def resampled_shapes(shapes: np.ndarray, spacings: np.ndarray, target: Sequence[float]) -> np.ndarray:
    """``compute_new_shape``: ``round(shape * spacing / target)`` per case, ``(cases, axes)``."""
    shapes = np.asarray(shapes, dtype=np.float64)
    spacings = np.asarray(spacings, dtype=np.float64)
    return np.array([[int(np.round(s / t * n)) for s, t, n in zip(sp, target, sh)] for sp, sh in zip(spacings, shapes)])


def pad_shape(shape: Sequence[float], divisor: Sequence[int]) -> tuple[int, ...]:
    """``network_topology.pad_shape``: round each axis up to a multiple of its divisor."""
    out = []
    for s, d in zip(shape, divisor):
        new = s + d - s % d
        if s % d == 0:
            new -= d
        out.append(int(new))
    return tuple(out)


def pool_and_conv_props(spacing: Sequence[float], patch: Sequence[float]) -> Topology:
    """``network_topology.get_pool_and_conv_props``: poolings, strides, kernels and padded patch.

    An axis is pooled while its feature map keeps ≥ 2 × 4 voxels and its current spacing is
    within 2× of the finest pooled axis' (a single poolable axis needs ≥ 3 × 4 voxels); its
    kernel is 3 once its current spacing is within 2× of the finest, 1 before (thick slices
    are not convolved across until the others have been pooled to their resolution). The
    bottleneck kernel is 3 along every axis.
    """
    dim = len(spacing)
    current_spacing = [float(s) for s in spacing]
    current_size = [float(p) for p in patch]
    strides: list[list[int]] = [[1] * dim]
    kernels: list[list[int]] = []
    pools = [0] * dim
    kernel = [1] * dim
    while True:
        valid = [i for i in range(dim) if current_size[i] >= 2 * FEATUREMAP_MIN_EDGE]
        if not valid:
            break
        finest = min(current_spacing[i] for i in valid)
        valid = [i for i in valid if current_spacing[i] / finest < 2]
        if len(valid) == 1 and current_size[valid[0]] < 3 * FEATUREMAP_MIN_EDGE:
            break
        if not valid:
            break
        for d in range(dim):
            if kernel[d] != 3 and current_spacing[d] / min(current_spacing) < 2:
                kernel[d] = 3
        stride = [1] * dim
        for v in valid:
            stride[v] = 2
            pools[v] += 1
            current_spacing[v] *= 2
            current_size[v] = float(np.ceil(current_size[v] / 2))
        strides.append(stride)
        kernels.append(list(kernel))
    divisor = tuple(int(2**p) for p in pools)
    kernels.append([3] * dim)
    return Topology(
        strides=tuple(tuple(s) for s in strides),
        kernel_sizes=tuple(tuple(k) for k in kernels),
        patch=pad_shape(patch, divisor),
        divisor=divisor,
        pools=tuple(pools),
    )


def initial_patch(spacing: Sequence[float], median_shape: Sequence[float]) -> np.ndarray:
    """``get_plans_for_configuration``'s start: aspect ``1/spacing``, 256³ (2D: 2048²) voxels, ≤ median shape."""
    tmp = 1.0 / np.asarray(spacing, dtype=np.float64)
    dims = len(spacing)
    volume = 256**3 if dims == 3 else 2048**2
    start = [round(v) for v in tmp * (volume / np.prod(tmp)) ** (1.0 / dims)]
    return np.array([min(i, j) for i, j in zip(start, list(median_shape)[:dims])])


def shrink(spacing: Sequence[float], median_shape: Sequence[float], topology: Topology) -> Topology | None:
    """One step of nnU-Net's patch reduction (the ``while`` loop of ``get_plans_for_configuration``).

    The axis largest relative to the median shape loses one divisor's worth of voxels,
    where the divisor is recomputed for the reduced patch first so no valid size is
    skipped; then the topology is recomputed. None when the patch cannot shrink further.
    """
    patch = list(topology.patch)
    dims = len(patch)
    axis = int(np.argsort([i / j for i, j in zip(patch, list(median_shape)[:dims])])[-1])
    tmp = list(patch)
    tmp[axis] -= topology.divisor[axis]
    if tmp[axis] < 1:
        return None
    divisor = pool_and_conv_props(spacing, tmp).divisor
    patch[axis] -= divisor[axis]
    if patch[axis] < 1:
        return None
    return pool_and_conv_props(spacing, patch)


def shrink_sequence(spacing: Sequence[float], median_shape: Sequence[float]) -> Iterator[Topology]:
    """The topologies nnU-Net tries, largest patch first, down to the smallest it can reach."""
    topology: Topology | None = pool_and_conv_props(spacing, initial_patch(spacing, median_shape))
    seen = set()
    while topology is not None and topology.patch not in seen:
        seen.add(topology.patch)
        yield topology
        topology = shrink(spacing, median_shape, topology)


def features_per_stage(n_stages: int, dims: int, base: int = BASE_FEATURES, cap: int | None = None) -> list[int]:
    """``_features_per_stage``: ``base · 2**i`` capped at 320 (3D) / 512 (2D)."""
    cap = MAX_FEATURES[dims] if cap is None else cap
    return [min(cap, base * 2**i) for i in range(n_stages)]


def feature_map_size(topology: Topology, features: Sequence[int], n_classes: int) -> int:
    """``PlainConvUNet.compute_conv_feature_map_size`` (2 convs per stage, strided conv, no deep supervision).

    The number of feature-map elements the network's convolutions output for one patch:
    nnU-Net's proxy for activation memory.
    """
    size = list(topology.patch)
    total = 0
    skips = []
    for s, stride in enumerate(topology.strides):
        size = [i // j for i, j in zip(size, stride)]
        total += 2 * int(features[s]) * int(np.prod(size, dtype=np.int64))
        if s < topology.n_stages - 1:
            skips.append(list(size))
    for s in range(topology.n_stages - 1):
        skip = skips[-(s + 1)]
        channels = int(features[-(s + 2)])
        voxels = int(np.prod(skip, dtype=np.int64))
        total += 2 * channels * voxels + channels * voxels  # conv block + transposed conv
        if s == topology.n_stages - 2:
            total += n_classes * voxels  # segmentation head at full resolution
    return total


def nnunet_memory_fits(feature_map: int, dims: int, memory_gb: float) -> bool:
    """nnU-Net's VRAM test: ``estimate / ref_batch * 2 <= reference · gb / 8``."""
    reference = REFERENCE_FEATURE_MAP[dims] * memory_gb / REFERENCE_GB
    return feature_map / REFERENCE_BATCH[dims] * MIN_BATCH <= reference


def nnunet_batch_size(feature_map: int, dims: int, memory_gb: float) -> int:
    """nnU-Net's batch from its estimate: ``round(reference / estimate * ref_batch)`` (before the 5 % cap)."""
    reference = REFERENCE_FEATURE_MAP[dims] * memory_gb / REFERENCE_GB
    return int(np.round(reference / feature_map * REFERENCE_BATCH[dims]))


def dataset_batch_cap(n_voxels_dataset: float, patch: Sequence[int]) -> int:
    """Largest batch that covers at most 5 % of the dataset's voxels (nnU-Net's overfitting guard)."""
    return int(np.round(n_voxels_dataset * MAX_DATASET_COVERED / float(np.prod(patch, dtype=np.float64))))


def normalisation_scheme(channel_name: str) -> str:
    """``get_normalization_scheme``: ``"ct"``, ``"nonorm"``, ``"rescale_to_0_1"``, ``"rgb_to_0_1"`` or ``"zscore"``."""
    name = channel_name.casefold()
    return name if name in ("ct", "nonorm", "zscore", "rescale_to_0_1", "rgb_to_0_1") else "zscore"


def resample_step(spacing: Sequence[float]) -> dict[str, Any]:
    """The pipeline's ``resample`` step to ``spacing`` (mm) with nnU-Net's interpolation
    (``resample_data_or_seg``: images order 3, segmentations order 1, and order 0 along the coarse axis of
    anisotropic data)."""
    return {
        "resample": {
            "spacing": [round(float(v), 5) for v in spacing],
            "mode": "cubic",
            "label_mode": "linear",
            "anisotropic": True,
            "anisotropic_mode": "nearest",
        }
    }


#: A label's typical object should span at least this many voxels along every axis at the target
#: spacing: one 3-voxel convolution kernel, so the first stage sees it as a shape and the first
#: pooling keeps it (medseg's departure from nnU-Net, which has no such rule).
MIN_OBJECT_VOXELS_ACROSS = 3.0
#: The finer spacing may multiply a case's voxels at most this much (memory, time per iteration).
MAX_VOXEL_GROWTH = 8.0


def small_structure_spacing(
    target: np.ndarray, spacings: np.ndarray, objects_mm3: dict[str, float]
) -> tuple[np.ndarray, dict[str, object]]:
    """A target spacing fine enough for the smallest label's typical object, never finer than the data.

    The object's size is the diameter of a sphere of its volume, ``d = (6 V / π)^(1/3)`` mm; each
    axis coarser than ``d / MIN_OBJECT_VOXELS_ACROSS`` is refined to that, but to no less than the
    finest spacing any case has along that axis (no detail the scanners did not record: thick
    slices stay thick), and by no more than :data:`MAX_VOXEL_GROWTH` in voxels per case.

    Args:
        target: ``(3,)`` mm, nnU-Net's target spacing.
        spacings: ``(cases, 3)`` mm.
        objects_mm3: label name → typical object volume (median volume over its cases / median
            component count), mm³.

    Returns:
        ``(spacing, numbers)``; ``numbers["changed"]`` says whether the rule refined the spacing,
        ``label``, ``diameter_mm``, ``across`` (voxels across per axis, before and after), ``floor``
        and ``limited_by`` explain it.
    """
    target = np.asarray(target, dtype=np.float64)
    if not objects_mm3:
        return target, {"changed": False}
    label = min(objects_mm3, key=lambda k: objects_mm3[k])
    diameter = float((6.0 * max(objects_mm3[label], 0.0) / np.pi) ** (1 / 3))
    floor = np.min(np.asarray(spacings, dtype=np.float64), axis=0) if np.size(spacings) else target
    floor = np.minimum(floor, target)
    wanted = diameter / MIN_OBJECT_VOXELS_ACROSS
    limit, capped = wanted, False

    def refine(w: float) -> np.ndarray:
        return np.minimum(target, np.maximum(w, floor))

    def growth(w: float) -> float:
        return float(np.prod(target / refine(w)))

    if growth(limit) > MAX_VOXEL_GROWTH:  # the coarsest spacing keeping the growth within the cap
        low, high = float(limit), float(target.max())
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if growth(mid) > MAX_VOXEL_GROWTH else (low, mid)
        limit, capped = high, True
    refined = refine(limit)
    short = bool(np.any(diameter / refined < MIN_OBJECT_VOXELS_ACROSS - 1e-6))
    limited_by = "growth" if capped else ("floor" if short else "")
    numbers: dict[str, object] = {
        "changed": bool(np.any(refined < target - 1e-9)),
        "label": label,
        "object_mm3": float(objects_mm3[label]),
        "diameter_mm": diameter,
        "across_before": (diameter / target).tolist(),
        "across_after": (diameter / refined).tolist(),
        "floor": floor.tolist(),
        "limited_by": limited_by,
    }
    return refined, numbers
