"""Small synthetic datasets with known geometry, intensities and labels."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.core import Volume
from medseg.io import write
from tests.networks.conftest import _one_thread  # noqa: F401  (autouse: one intra-op thread)


def write_case(
    root: Path,
    case_id: str,
    image: np.ndarray,
    label: np.ndarray,
    affine: np.ndarray,
    channels: int = 1,
) -> None:
    """``image`` ``(X, Y, Z)`` (or ``(C, X, Y, Z)``) and ``label`` ``(X, Y, Z)`` in nnU-Net layout."""
    img = image if image.ndim == 4 else image[None]
    for c in range(img.shape[0] if channels > 1 else 1):
        arr = img[c : c + 1] if channels > 1 else img
        write(Volume(arr.astype(np.float32), affine), root / "imagesTr" / f"{case_id}_{c:04d}.nii.gz")
    write(Volume(label[None].astype(np.uint8), affine, kind="label"), root / "labelsTr" / f"{case_id}.nii.gz")


def dataset_json(root: Path, labels: dict[str, int], channels: Sequence[str] = ("CT",), **extra: object) -> None:
    meta = {"channel_names": {str(i): c for i, c in enumerate(channels)}, "labels": labels, "file_ending": ".nii.gz"}
    meta.update(extra)
    (root / "dataset.json").write_text(json.dumps(meta))


def box_case(shape=(20, 16, 10), fg_value: float = 100.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Zero background, a nonzero body box, label 1 = two boxes (32 and 4 voxels), label 2 = a 3³ box with a hole."""
    image = np.zeros(shape, np.float32)
    image[2:18, 2:14, 1:9] = 10.0  # the nonzero body: 16 × 12 × 8 voxels
    label = np.zeros(shape, np.uint8)
    label[4:8, 4:8, 2:4] = 1  # 32 voxels
    label[12:14, 10:12, 6:7] = 1  # 4 voxels, separate
    label[10:13, 3:6, 3:6] = 2  # 27 voxels with a 1-voxel hole
    label[11, 4, 4] = 0
    image[label > 0] = fg_value
    return image, label
