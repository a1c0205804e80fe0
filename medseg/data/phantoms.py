"""Seeded CT-like phantoms: ellipsoid organs inside an elliptic body, known geometry."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.core.geometry import make_affine
from medseg.core.volume import Volume


@dataclass(frozen=True)
class Organ:
    """An ellipsoid organ: label value, centre and radii as fractions of the body, HU."""

    name: str
    label: int
    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    hu: float


#: The default organs (label values 1..4), placed inside the body ellipse. Centres are fractions of
#: the half-extent along the array axes; on a RAS grid +x is the patient's right (liver right,
#: spleen and left kidney left).
ORGANS: tuple[Organ, ...] = (
    Organ("liver", 1, (0.30, 0.05, 0.10), (0.32, 0.30, 0.35), 60.0),
    Organ("spleen", 2, (-0.40, 0.10, 0.15), (0.14, 0.16, 0.20), 45.0),
    Organ("kidney_left", 3, (-0.30, 0.35, -0.25), (0.10, 0.12, 0.22), 150.0),
    Organ("lesion", 4, (0.25, 0.0, 0.15), (0.07, 0.07, 0.07), 15.0),
)


def ct_phantom(
    shape: Sequence[int] = (96, 96, 64),
    spacing: Sequence[float] = (1.5, 1.5, 2.5),
    *,
    affine: np.ndarray | None = None,
    organs: Sequence[Organ] = ORGANS,
    noise_hu: float = 20.0,
    seed: int = 0,
    jitter: float = 0.05,
) -> tuple[Volume, Volume]:
    """A CT-like image (int16 HU) and its label map on the same grid.

    Args:
        shape: ``(X, Y, Z)`` voxels.
        spacing: mm per voxel (used when ``affine`` is None; then the grid is RAS, centred at 0).
        affine: optional 4×4 voxel→RAS affine (oblique, LPS, ...); organs are placed in
            voxel space, so their world shape follows the affine.
        organs: the organs to draw; later ones overwrite earlier ones (lesion inside liver).
        noise_hu: standard deviation of the Gaussian noise, HU.
        seed: seeds organ position/size jitter and noise.
        jitter: random relative change of organ centres and radii.

    Returns:
        ``(image, label)``: image ``(1, X, Y, Z)`` int16 kind ``intensity`` (air −1000,
        fat −100, soft tissue 40, organs at their HU); label ``(1, X, Y, Z)`` uint8.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    if affine is None:
        centre = (np.array(shape) - 1) / 2 * np.asarray(spacing, dtype=float)
        affine = make_affine(spacing, -centre)
    grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    x, y, z = grids
    body = (x / 0.9) ** 2 + (y / 0.75) ** 2 <= 1.0
    image = np.full(shape, -1000.0, dtype=np.float32)
    image[body] = 40.0
    fat = body & ((x / 0.9) ** 2 + (y / 0.75) ** 2 > 0.8)
    image[fat] = -100.0
    label = np.zeros(shape, dtype=np.uint8)
    for organ in organs:
        c = np.array(organ.centre) * (1 + jitter * rng.uniform(-1, 1, 3))
        r = np.array(organ.radii) * (1 + jitter * rng.uniform(-1, 1, 3))
        inside = ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1.0
        inside &= body
        image[inside] = organ.hu
        label[inside] = organ.label
    image += rng.normal(0.0, noise_hu, size=shape).astype(np.float32)
    meta = {"source": f"ct_phantom(seed={seed})", "modality": "CT"}
    img = Volume(np.round(image).astype(np.int16)[None], affine, kind="intensity", meta=meta)
    lab = Volume(label[None], affine, kind="label", meta={**meta, "labels": {o.label: o.name for o in organs}})
    return img, lab


def write_phantom_dataset(
    root: str | os.PathLike[str],
    n_cases: int = 4,
    shape: Sequence[int] = (48, 48, 32),
    spacing: Sequence[float] = (2.0, 2.0, 3.0),
    *,
    organs: Sequence[Organ] = ORGANS,
    seed: int = 0,
) -> Path:
    """Write ``n_cases`` phantoms as an nnU-Net/MSD dataset (``imagesTr/CASE_0000.nii.gz``,
    ``labelsTr/CASE.nii.gz``, ``dataset.json`` with channel ``CT`` and the organ names).

    Args:
        root: the dataset folder (created; e.g. ``Dataset900_Phantoms``).
        n_cases: cases ``phantom_000`` ... (seeds ``seed``, ``seed + 1``, ...).
        shape: ``(X, Y, Z)`` voxels of each case.
        spacing: mm per voxel.
        organs: the organs drawn (label values as in :data:`ORGANS`).
        seed: seed of the first case.

    Returns:
        ``root`` as a Path.
    """
    from medseg.io import write, write_text_atomic

    out = Path(root)
    for i in range(n_cases):
        image, label = ct_phantom(shape, spacing, organs=organs, seed=seed + i)
        write(image, out / "imagesTr" / f"phantom_{i:03d}_0000.nii.gz")
        write(label, out / "labelsTr" / f"phantom_{i:03d}.nii.gz")
    meta = {
        "name": out.name,
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{o.name: o.label for o in organs}},
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
    }
    write_text_atomic(out / "dataset.json", json.dumps(meta, indent=2))
    return out
