"""Label remapping with a lookup table (e.g. merge classes, renumber to a target atlas)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from medseg.core.steps import Step, register_step
from medseg.core.volume import Volume
from medseg.errors import ConfigError, InputError
from medseg.postprocess.labelmap import label_array, with_labels


def label_dtype(max_label: int) -> np.dtype:
    """``uint8`` up to 255, ``uint16`` up to 65535, else ``uint32``."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if max_label <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ConfigError(f"label value {max_label} does not fit in 32 bits")


def remap_labels(labels: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    """Replace each label ``k`` by ``mapping[k]``; labels not in ``mapping`` stay.

    Args:
        labels: non-negative integer label map ``(X, Y, Z)``.
        mapping: old → new label (non-negative integers; 0 removes a label).

    Returns:
        the remapped map, dtype ``uint8``/``uint16``/``uint32`` by the largest value.

    Raises:
        ConfigError: a negative label in ``mapping``.
        InputError: a negative value in ``labels``.
    """
    items = {int(k): int(v) for k, v in mapping.items()}
    bad = [(k, v) for k, v in items.items() if k < 0 or v < 0]
    if bad:
        raise ConfigError(f"remap_labels: labels must be non-negative, got {bad}")
    if labels.size and int(labels.min()) < 0:
        raise InputError(
            f"remap_labels: the label map holds negative values (min {int(labels.min())}); labels are >= 0"
        )
    top = max([int(labels.max()) if labels.size else 0, *items])
    lut = np.arange(top + 1, dtype=np.int64)
    for k, v in items.items():
        lut[k] = v
    return lut.astype(label_dtype(int(lut.max())))[labels]


@register_step("remap_labels", stage="postprocess")
@dataclass(frozen=True)
class RemapLabels(Step):
    """Renumber labels: ``mapping`` old → new (unlisted labels stay, 0 removes).

    Attributes:
        mapping: e.g. ``{3: 2, 4: 0}``.
    """

    mapping: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.mapping, Mapping):
            raise ConfigError(f"remap_labels: mapping must be a dict of old → new labels, got {self.mapping!r}")
        object.__setattr__(self, "mapping", {int(k): int(v) for k, v in self.mapping.items()})

    def __call__(self, volume: Volume) -> Volume:
        labels = label_array(volume, self.name)
        return with_labels(volume, remap_labels(labels, self.mapping), self.entry(mapping=dict(self.mapping)))
