"""validate / train / predict / evaluate as subprocesses on a tiny phantom dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import medseg
from medseg.data import ct_phantom

TINY = """
name: tiny-ct
input: {modality: CT, channels: [CT], labels: {1: liver, 2: spleen}}
preprocess:
  - reorient: {axcodes: RAS}
  - resample: {spacing: [3.0, 3.0, 3.0]}
  - clip: {low: -160, high: 240}
  - scale_intensity: {low: -160, high: 240}
network: {name: unet, options: {n_stages: 3, base_channels: 4, max_channels: 16}}
training: {patch_size: [16, 16, 16], batch_size: 2, max_epochs: 2, iterations_per_epoch: 2, val_every: 1,
           device: cpu, progress: false, optimizer: adamw, lr: 0.003}
inference: {patch_size: [16, 16, 16], batch_size: 4, device: cpu}
postprocess:
  - keep_largest_component: {}
export:
  - nifti: {}
  - stats: {}
"""


def _medseg(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medseg.cli", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    ds = root / "Dataset001_Tiny"
    organs = ct_phantom.__defaults__  # noqa: F841  (defaults are fine)
    for i in range(3):
        img, lab = ct_phantom((40, 36, 20), (1.5, 1.5, 3.0), seed=i)
        lab = lab.replace(array=np.where(lab.numpy() <= 2, lab.numpy(), 0).astype(np.uint8))
        medseg.write(img, ds / "imagesTr" / f"case{i}_0000.nii.gz")
        medseg.write(lab, ds / "labelsTr" / f"case{i}.nii.gz")
    (ds / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "liver": 1, "spleen": 2},
                "file_ending": ".nii.gz",
            }
        )
    )
    (root / "tiny.yaml").write_text(TINY)
    return root


def test_validate_ok_and_error(workspace):
    r = _medseg("validate", str(workspace / "tiny.yaml"))
    assert r.returncode == 0, r.stderr
    assert "valid pipeline 'tiny-ct'" in r.stdout
    bad = workspace / "bad.yaml"
    bad.write_text(TINY.replace("keep_largest_component", "keep_largest_componnt"))
    r = _medseg("validate", str(bad))
    assert r.returncode == 1
    assert "did you mean 'keep_largest_component'" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_train_predict_resume_evaluate(workspace):
    runs = workspace / "runs"
    r = _medseg(
        "train",
        str(workspace / "tiny.yaml"),
        "--data",
        str(workspace / "Dataset001_Tiny"),
        "-o",
        str(runs),
        "--fold",
        "0",
        "--folds",
        "3",
        "--json",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout)
    ckpt = Path(info["best_checkpoint"])
    assert ckpt.is_file() and info["epochs"] == 2
    assert (runs / "splits.json").is_file() or any(runs.rglob("splits.json"))

    out = workspace / "pred"
    r = _medseg("predict", str(ckpt), "-i", str(workspace / "Dataset001_Tiny" / "imagesTr"), "-o", str(out), "-q")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "3 succeeded, 0 skipped, 0 failed" in r.stdout
    for i in range(3):
        img = medseg.read(workspace / "Dataset001_Tiny" / "imagesTr" / f"case{i}_0000.nii.gz")
        pred = medseg.read(out / f"case{i}.nii.gz")
        assert pred.spatial_shape == img.spatial_shape
        assert np.allclose(pred.affine, img.affine, atol=1e-5)
        assert set(np.unique(pred.numpy())) <= {0, 1, 2}
        prov = json.loads((out / f"case{i}.provenance.json").read_text())
        assert prov["fingerprint"]
    # resumed: nothing to do
    r = _medseg("predict", str(ckpt), "-i", str(workspace / "Dataset001_Tiny" / "imagesTr"), "-o", str(out), "-q")
    assert r.returncode == 0 and "0 succeeded, 3 skipped" in r.stdout
    # a YAML pipeline with --checkpoint gives the same masks
    out2 = workspace / "pred2"
    r = _medseg(
        "predict",
        str(workspace / "tiny.yaml"),
        "-c",
        str(ckpt),
        "-i",
        str(workspace / "Dataset001_Tiny" / "imagesTr" / "case1_0000.nii.gz"),
        "-o",
        str(out2),
        "-q",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert np.array_equal(medseg.read(out2 / "case1.nii.gz").numpy(), medseg.read(out / "case1.nii.gz").numpy())

    report = workspace / "eval" / "report.csv"
    r = _medseg(
        "evaluate", "--pred", str(out), "--gt", str(workspace / "Dataset001_Tiny" / "labelsTr"), "-o", str(report)
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert report.is_file() and "dice" in report.read_text().splitlines()[0]


def test_predict_without_checkpoint_is_one_line_error(workspace, tmp_path):
    img = workspace / "Dataset001_Tiny" / "imagesTr" / "case0_0000.nii.gz"
    r = _medseg("predict", str(workspace / "tiny.yaml"), "-i", str(img), "-o", str(tmp_path / "o"), "-q")
    assert r.returncode == 1
    assert "no checkpoint" in r.stderr and "Traceback" not in r.stderr


def test_predict_missing_checkpoint_file(workspace, tmp_path):
    img = workspace / "Dataset001_Tiny" / "imagesTr" / "case0_0000.nii.gz"
    r = _medseg(
        "predict",
        str(workspace / "tiny.yaml"),
        "-c",
        str(tmp_path / "nope.pt"),
        "-i",
        str(img),
        "-o",
        str(tmp_path / "o"),
        "-q",
    )
    assert r.returncode == 1
    assert "nope.pt" in r.stderr and "Traceback" not in r.stderr


def test_train_says_how_long_a_plan_too_long_for_this_device_takes(workspace, tmp_path):
    long_plan = TINY.replace("max_epochs: 2, iterations_per_epoch: 2", "max_epochs: 100000000, iterations_per_epoch: 5")
    long_plan = long_plan.replace("lr: 0.003}", "lr: 1.0e-12, early_stopping: 1}")
    (tmp_path / "long.yaml").write_text(long_plan)
    r = _medseg("train", str(tmp_path / "long.yaml"), "--data", str(workspace / "Dataset001_Tiny"), "-o",
                str(tmp_path / "runs"), "--fold", "0", "--folds", "3")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(line for line in r.stderr.splitlines() if "s/iteration" in line)
    assert line.startswith("WARNING") and "100000000 epochs × 5 iterations" in line and "days" in line
    assert "--max-time" in line and "medseg plan --time-budget" in line


def test_train_on_one_case_with_a_fold_says_what_to_do(workspace, tmp_path):
    one = tmp_path / "one"
    for sub in ("imagesTr", "labelsTr"):
        (one / sub).mkdir(parents=True)
    (one / "imagesTr" / "case0_0000.nii.gz").write_bytes(
        (workspace / "Dataset001_Tiny" / "imagesTr" / "case0_0000.nii.gz").read_bytes()
    )
    (one / "labelsTr" / "case0.nii.gz").write_bytes(
        (workspace / "Dataset001_Tiny" / "labelsTr" / "case0.nii.gz").read_bytes()
    )
    (one / "dataset.json").write_text((workspace / "Dataset001_Tiny" / "dataset.json").read_text())
    r = _medseg("train", str(workspace / "tiny.yaml"), "--data", str(one), "-o", str(tmp_path / "r"), "--fold", "0")
    assert r.returncode == 1
    assert "1 case(s) cannot be split into 5 folds" in r.stderr and "no --fold" in r.stderr
    assert "--folds" not in r.stderr.split("cannot be split")[1]  # 'use --folds 1' would not work either


def test_max_time_lengthens_a_short_plan_and_metrics_say_what_ran(workspace, tmp_path, monkeypatch):
    """The tiny plan (2 × 2 iterations) is far shorter than --max-time 60: training goes on until the time is used.
    The trainer's clock advances 1 s per reading, so the outcome does not depend on the machine's load."""
    import itertools
    import types

    import medseg.training.trainer as trainer_module
    from medseg.cli.main import main

    clock = itertools.count(0.0, 1.0)
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    runs = tmp_path / "runs"
    args = ["train", str(workspace / "tiny.yaml"), "--data", str(workspace / "Dataset001_Tiny"), "-o", str(runs)]
    assert main([*args, "--max-time", "60"]) == 0
    saved = json.loads((runs / "all" / "metrics.json").read_text())
    assert saved["epochs"] > 2 and saved["stopped_by"] == "time limit" and saved["epochs_planned"] is None
    assert 30.0 < saved["training_s"] <= 62.0 and 2 * saved["epochs"] - 1 <= saved["iterations"] <= 2 * saved["epochs"]
    assert main([*args, "--max-time", "60", "--epochs", "1"]) == 1  # one or the other
