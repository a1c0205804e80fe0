"""The training summary travels in the checkpoint from ``medseg train`` and QC compares predictions with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import medseg
from medseg.data import ct_phantom
from tests.cli.test_pipeline_cli import TINY, _medseg


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("qctrain")
    ds = root / "Dataset001_Tiny"
    for i in range(3):
        img, lab = ct_phantom((40, 36, 20), (1.5, 1.5, 3.0), seed=i)
        lab = lab.replace(array=np.where(lab.numpy() <= 2, lab.numpy(), 0).astype(np.uint8))
        medseg.write(img, ds / "imagesTr" / f"case{i}_0000.nii.gz")
        medseg.write(lab, ds / "labelsTr" / f"case{i}.nii.gz")
    (ds / "dataset.json").write_text(
        json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 2},
                    "file_ending": ".nii.gz"})
    )  # fmt: skip
    (root / "tiny.yaml").write_text(TINY)
    r = _medseg("train", str(root / "tiny.yaml"), "--data", str(ds), "-o", str(root / "runs"), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    img, _ = ct_phantom((40, 36, 20), (1.5, 1.5, 3.0), seed=7)
    medseg.write(img, root / "in" / "new.nii.gz")
    return Path(json.loads(r.stdout)["best_checkpoint"]), root


def test_train_records_the_training_cases_in_the_checkpoint(trained) -> None:
    from medseg.training import load_checkpoint

    ckpt, _ = trained
    summary = load_checkpoint(ckpt).training_summary
    assert summary["n_cases"] == 3 and set(summary["labels"]) == {"1", "2"}
    assert summary["spacing"] == {"min": [1.5, 1.5, 3.0], "max": [1.5, 1.5, 3.0]}
    # after the pipeline's clip/scale to [-160, 240] HU → [0, 1]: soft-tissue organs sit inside the window
    liver = summary["intensity"][0]["median"]["mean"]
    assert 0.2 < liver < 0.9 and summary["labels"]["1"]["volume_ml"]["mean"] > 0


def test_prediction_is_compared_with_the_summary_and_without_it_degrades(trained) -> None:
    from medseg.training.checkpoint import set_training_summary

    ckpt, root = trained
    r = _medseg("predict", str(ckpt), "-i", str(root / "in"), "-o", str(root / "with"), "-q", "-e", "nifti")
    assert r.returncode == 0, r.stderr
    qc = json.loads((root / "with" / "new.provenance.json").read_text())["qc"]
    names = {s["name"] for s in qc["signals"]}
    assert {"spacing", "intensity.CT"} <= names and not qc["notes"], qc
    assert any(n.startswith("volume.") for n in names)

    bare = root / "bare.pt"
    bare.write_bytes(ckpt.read_bytes())
    set_training_summary(bare, {})
    r = _medseg("predict", str(bare), "-i", str(root / "in"), "-o", str(root / "without"), "-q", "-e", "nifti")
    assert r.returncode == 0, r.stderr
    qc = json.loads((root / "without" / "new.provenance.json").read_text())["qc"]
    names = {s["name"] for s in qc["signals"]}
    assert "no training summary" in qc["notes"][0] and not any(
        n.startswith(("intensity", "volume", "spacing")) for n in names
    )
    assert isinstance(qc["qc_score"], float)
