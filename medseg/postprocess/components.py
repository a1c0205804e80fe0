"""Connected components: keep the largest, remove the small ones (cc3d, in the foreground box)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cc3d
import numpy as np

from medseg.core.steps import Step, register_step
from medseg.core.volume import Volume
from medseg.errors import ConfigError
from medseg.postprocess.labelmap import check_connectivity, foreground_box, label_array, with_labels


def _components(labels: np.ndarray, per_label: bool, connectivity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Component ids ``(X, Y, Z)``, voxel count per id and label per id (id 0 = background)."""
    source = labels if per_label else (labels > 0).astype(np.uint8)
    cc = cc3d.connected_components(source, connectivity=check_connectivity(connectivity))
    n = int(cc.max())
    counts = np.bincount(cc.ravel(), minlength=n + 1)
    owner = np.zeros(n + 1, dtype=labels.dtype)
    owner[cc.ravel()] = source.ravel()
    counts[0] = 0
    return cc, counts, owner


def keep_largest_component(labels: np.ndarray, *, per_label: bool = True, connectivity: int = 26) -> np.ndarray:
    """Keep only the largest connected component, of each label or of all foreground.

    Args:
        labels: integer label map ``(X, Y, Z)``.
        per_label: True: the largest component of every label survives; False: the
            largest component of the foreground (all labels together) survives.
        connectivity: 6, 18 or 26 neighbours.

    Returns:
        a new label map, same shape and dtype; removed voxels become 0.
    """
    out = np.zeros_like(labels)
    box = foreground_box(labels)
    if box is None:
        return out
    sub = labels[box]
    cc, counts, owner = _components(sub, per_label, connectivity)
    keep = np.zeros(counts.size, dtype=bool)
    if per_label:
        ids = np.flatnonzero(counts)
        order = np.lexsort((-counts[ids], owner[ids]))  # by label, then largest first
        ids, lab = ids[order], owner[ids[order]]
        first = np.ones(ids.size, dtype=bool)
        first[1:] = lab[1:] != lab[:-1]
        keep[ids[first]] = True
    else:
        keep[int(np.argmax(counts))] = True
    out[box] = np.where(keep[cc], sub, 0)
    return out


def _only(labels: np.ndarray, selected: tuple[int, ...] | None, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn`` applied to the voxels of the ``selected`` labels; every other label passes through."""
    if selected is None:
        return fn(labels)
    chosen = np.isin(labels, selected)
    return np.where(chosen, fn(np.where(chosen, labels, 0)), labels)


def _label_tuple(step: Step, values: tuple[int, ...] | None) -> None:
    if values is not None:
        object.__setattr__(step, "labels", tuple(int(v) for v in values))
        if not step.labels or min(step.labels) < 1:  # type: ignore[attr-defined]
            raise ConfigError(f"{step.name}: labels must be non-empty label values ≥ 1, got {values!r}")


def remove_small_components(
    labels: np.ndarray, *, min_size_voxels: float, per_label: bool = True, connectivity: int = 26
) -> np.ndarray:
    """Set to 0 every connected component with fewer than ``min_size_voxels`` voxels.

    Args:
        labels: integer label map ``(X, Y, Z)``.
        min_size_voxels: components strictly smaller are removed (may be fractional).
        per_label: components of each label separately, or of all foreground together.
        connectivity: 6, 18 or 26 neighbours.
    """
    out = np.zeros_like(labels)
    box = foreground_box(labels)
    if box is None:
        return out
    sub = labels[box]
    cc, counts, _ = _components(sub, per_label, connectivity)
    keep = counts >= min_size_voxels
    keep[0] = False
    out[box] = np.where(keep[cc], sub, 0)
    return out


@register_step("keep_largest_component", stage="postprocess")
@dataclass(frozen=True)
class KeepLargestComponent(Step):
    """Keep the largest connected component per label (or of all foreground).

    Attributes:
        per_label: one component per label (True) or one for the whole foreground.
        connectivity: 6 (faces), 18 (edges) or 26 (corners).
        labels: the labels this applies to (None: all); others pass through unchanged,
            e.g. organs that are one piece but not lesions, which may be several.
    """

    per_label: bool = True
    connectivity: int = 26
    labels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check_connectivity(self.connectivity)
        _label_tuple(self, self.labels)

    def __call__(self, volume: Volume) -> Volume:
        labels = label_array(volume, self.name)
        out = _only(
            labels,
            self.labels,
            lambda lab: keep_largest_component(lab, per_label=self.per_label, connectivity=self.connectivity),
        )
        return with_labels(volume, out, self.entry(removed_voxels=int(np.count_nonzero(labels != out))))


@register_step("remove_small_components", stage="postprocess")
@dataclass(frozen=True)
class RemoveSmallComponents(Step):
    """Remove connected components smaller than ``min_size_mm3`` (voxel volume from the affine).

    Attributes:
        min_size_mm3: smallest component kept, in mm³.
        per_label: components of each label separately, or of all foreground together.
        connectivity: 6, 18 or 26.
        labels: the labels this applies to (None: all); others pass through unchanged,
            e.g. to keep small lesions while cleaning organ masks.
    """

    min_size_mm3: float = 10.0
    per_label: bool = True
    connectivity: int = 26
    labels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check_connectivity(self.connectivity)
        _label_tuple(self, self.labels)
        if not self.min_size_mm3 >= 0:
            raise ConfigError(f"remove_small_components: min_size_mm3 must be >= 0, got {self.min_size_mm3!r}")

    def __call__(self, volume: Volume) -> Volume:
        labels = label_array(volume, self.name)
        min_voxels = self.min_size_mm3 / volume.voxel_volume_mm3 - 1e-9  # tolerate rounding of mm³
        out = _only(
            labels,
            self.labels,
            lambda lab: remove_small_components(
                lab, min_size_voxels=min_voxels, per_label=self.per_label, connectivity=self.connectivity
            ),
        )
        return with_labels(volume, out, self.entry(removed_voxels=int(np.count_nonzero(labels != out))))
