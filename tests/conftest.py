"""Shared fixtures: seeded volumes with oblique/LPS affines, sample-data paths, DICOM series."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from medseg.core import Volume, make_affine

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


def oblique_affine(spacing=(0.9, 1.1, 2.5), origin=(-40.0, 12.0, 7.0), angles_deg=(12.0, -7.0, 25.0)) -> np.ndarray:
    """An oblique, anisotropic RAS affine (rotation about all three axes)."""
    rot = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    return make_affine(spacing, origin, rot)


LPS_AFFINE = make_affine((0.8, 0.8, 2.0), (120.0, 95.0, -30.0), np.diag([-1.0, -1.0, 1.0]))
AFFINES = {
    "ras": make_affine((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
    "lps": LPS_AFFINE,
    "oblique": oblique_affine(),
    "anisotropic": make_affine((0.5, 0.7, 5.0), (3.0, -4.0, 100.0)),
}


@pytest.fixture
def make_volume() -> Callable[..., Volume]:
    """``make_volume(shape=(1, 20, 18, 12), affine="oblique", kind="intensity", dtype, seed)``."""

    def _make(
        shape=(1, 20, 18, 12),
        affine: str | np.ndarray = "oblique",
        kind: str = "intensity",
        dtype=np.float32,
        seed: int = 0,
        n_labels: int = 3,
    ) -> Volume:
        rng = np.random.default_rng(seed)
        a = AFFINES[affine] if isinstance(affine, str) else affine
        if kind == "label":
            arr = rng.integers(0, n_labels, size=shape).astype(dtype if np.dtype(dtype).kind in "iu" else np.uint8)
        else:
            arr = (rng.normal(100.0, 30.0, size=shape)).astype(dtype)
        return Volume(arr, a, kind=kind)  # type: ignore[arg-type]

    return _make


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def sample() -> Path:
    return SAMPLE


@pytest.fixture
def dicom_series(tmp_path: Path) -> Callable[..., Path]:
    """Write a small synthetic CT series; returns its folder. Options go to write_series."""
    from medseg.data import ct_phantom
    from medseg.data.dicom_series import write_series

    def _make(name: str = "ct", shape=(24, 20, 10), spacing=(1.2, 1.1, 3.0), affine=None, seed=0, **kw) -> Path:
        img, _ = ct_phantom(shape, spacing, affine=affine, seed=seed)
        folder = tmp_path / name
        write_series(img, folder, **kw)
        return folder

    return _make
