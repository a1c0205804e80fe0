"""A tiny phantom dataset in nnU-Net layout (4 cases of 32³, 3 labels)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.data import ct_phantom
from medseg.io import write
from tests.networks.conftest import _one_thread  # noqa: F401  (autouse: one intra-op thread here too)

LABELS = {"background": 0, "liver": 1, "spleen": 2}


def write_nnunet(root: Path, n_cases: int = 4, shape=(32, 32, 32), spacing=(2.0, 2.0, 2.0)) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(n_cases):
        image, label = ct_phantom(shape, spacing, seed=i, noise_hu=10.0)
        lab = label.numpy().copy()
        lab[lab > 2] = 1  # kidney/lesion → liver: 3 classes keep the test small
        # normalise to a CT window so the tiny network learns fast
        img = np.clip(image.numpy().astype(np.float32), -200, 250) / 100.0
        write(image.replace(array=img), root / "imagesTr" / f"case{i:02d}_0000.nii.gz")
        write(label.replace(array=lab), root / "labelsTr" / f"case{i:02d}.nii.gz")
    meta = {"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": n_cases, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


@pytest.fixture
def nnunet_dataset(tmp_path: Path) -> Path:
    return write_nnunet(tmp_path / "Dataset001_Phantom")
