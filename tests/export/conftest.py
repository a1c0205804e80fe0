"""Fixtures for export tests: a CT phantom case with its label map."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.core import Volume
from medseg.data import ct_phantom

PHANTOM_LABELS = {1: "liver", 2: "spleen", 3: "kidney_left", 4: "lesion"}


@pytest.fixture
def phantom() -> tuple[Volume, Volume]:
    """(image int16 HU, label uint8 1..4) on an anisotropic RAS grid, 32×28×12."""
    image, label = ct_phantom((32, 28, 12), (1.2, 1.1, 3.0))
    return image.replace(meta={**image.meta, "modality": "CT"}), label.replace(kind="label")


def sphere_mask(shape, spacing, center_mm, radius_mm) -> np.ndarray:
    """Boolean ``(X, Y, Z)`` ball of ``radius_mm`` around ``center_mm`` (index-space mm)."""
    idx = np.indices(shape).astype(float)
    d2 = sum(((idx[k] * spacing[k]) - center_mm[k]) ** 2 for k in range(3))
    return d2 <= radius_mm**2
