"""nnU-Net v2 as a contender: its own virtual environment, a phantom dataset, training, prediction.

nnU-Net runs in ``benchmarks/out/nnunet-venv`` (created on first use), never in medseg's
environment. Installation: ``pip install torch==2.13.0`` first, then ``nnunetv2`` and its
dependencies with ``--no-deps`` — its dependency ``dynamic-network-architectures`` pulls
``timm``, and ``timm`` pulls ``torchvision``, whose only wheels here are CUDA builds that
replace the CPU torch; nnU-Net itself never imports torchvision, so it is left out.

Training uses ``nnUNetTrainerBudget`` (written into the venv's nnU-Net trainer folder so
``nnUNetv2_predict -tr`` finds it): the standard trainer with short epochs
(``NNUNET_ITERS_PER_EPOCH``), a wall-clock budget (``NNUNET_BUDGET_S``) and the poly
learning rate over that budget instead of over 1000 epochs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import OUT, ROOT, run_child, run_e2e

VENV = OUT / "nnunet-venv"
NNUNET_VERSION = "2.8.1"
#: nnU-Net's pure-Python dependencies, installed with ``--no-deps`` so torchvision/timm stay out.
NO_DEPS = [
    f"nnunetv2=={NNUNET_VERSION}",
    "dynamic-network-architectures>=0.4.4,<0.5",
    "batchgeneratorsv2>=0.3.2",
    "batchgenerators>=0.25.1",
    "acvl-utils>=0.2.6,<0.3",
]
DEPS = [
    "numpy",
    "scipy",
    "scikit-learn",
    "scikit-image",
    "SimpleITK",
    "pandas",
    "graphviz",
    "tifffile",
    "requests",
    "nibabel",
    "matplotlib",
    "seaborn",
    "imagecodecs",
    "yacs",
    "einops",
    "blosc2>=3.3.2",
    "tqdm",
    "pillow",
    "future",
    "unittest2",
    "threadpoolctl",
    "connected-components-3d",
]

TRAINER = '''
"""Written by medseg benchmarks/nnunet.py: nnU-Net's default trainer under a wall-clock budget."""
import os
import time

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerBudget(nnUNetTrainer):
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.budget_s = float(os.environ.get("NNUNET_BUDGET_S", "300"))
        self.num_iterations_per_epoch = int(os.environ.get("NNUNET_ITERS_PER_EPOCH", "10"))
        self.num_val_iterations_per_epoch = int(os.environ.get("NNUNET_VAL_ITERS", "2"))
        self.num_epochs = int(os.environ.get("NNUNET_MAX_EPOCHS", "100000"))
        self.iterations_done = 0

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        frac = min((time.perf_counter() - self._t0) / self.budget_s, 0.999)
        for group in self.optimizer.param_groups:
            group["lr"] = self.initial_lr * (1 - frac) ** 0.9

    def run_training(self):
        self.on_train_start()
        self._t0 = time.perf_counter()
        for epoch in range(self.current_epoch, self.num_epochs):
            self.on_epoch_start()
            self.on_train_epoch_start()
            outputs = []
            for _ in range(self.num_iterations_per_epoch):
                outputs.append(self.train_step(next(self.dataloader_train)))
                self.iterations_done += 1
            self.on_train_epoch_end(outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                val = [self.validation_step(next(self.dataloader_val)) for _ in range(self.num_val_iterations_per_epoch)]
                self.on_validation_epoch_end(val)
            self.on_epoch_end()
            if time.perf_counter() - self._t0 >= self.budget_s:
                break
        self.print_to_log_file(f"budget: {self.iterations_done} iterations in {time.perf_counter() - self._t0:.1f} s")
        self.on_train_end()

    def perform_actual_validation(self, save_probabilities=False):
        # The benchmarks evaluate on their own held-out cases; nnU-Net's validation pass over the
        # training cases (fold "all") would only add minutes outside the budget.
        self.print_to_log_file("final validation skipped (benchmark)")
'''


def venv_bin(name: str) -> Path:
    return VENV / "bin" / name


def ensure_venv(log: Path) -> None:
    """Create the nnU-Net venv and install nnU-Net (skipped when it imports already)."""
    py = venv_bin("python")
    check = [
        str(py),
        "-c",
        "import torch, nnunetv2; from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor",
    ]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        install_trainer()
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        steps = [
            [sys.executable, "-m", "venv", str(VENV)],
            [str(py), "-m", "pip", "install", "torch==2.13.0"],
            [str(py), "-m", "pip", "install", "--no-deps", *NO_DEPS],
            [str(py), "-m", "pip", "install", *DEPS],
        ]
        for cmd in steps:
            f.write(f"$ {' '.join(cmd)}\n")
            f.flush()
            if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode != 0:
                raise RuntimeError(f"nnU-Net install failed at: {' '.join(cmd)} (see {log})")
    if subprocess.run(check, capture_output=True).returncode != 0:
        raise RuntimeError(f"nnU-Net installed but does not import (see {log})")
    install_trainer()


def install_trainer() -> None:
    """Write ``nnUNetTrainerBudget`` into the venv's nnU-Net trainer variants."""
    out = subprocess.run(
        [str(venv_bin("python")), "-c", "import nnunetv2, os; print(os.path.dirname(nnunetv2.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Top level of the trainer folder: nnU-Net's class lookup imports the modules there before
    # descending into variants/, some of which import timm (and so torchvision).
    target = Path(out) / "training" / "nnUNetTrainer" / "nnUNetTrainerBudget.py"
    if not target.exists() or target.read_text() != TRAINER:
        target.write_text(TRAINER)


def env(base: Path, **extra: str) -> dict[str, str]:
    """Environment of nnU-Net commands: its three folders under ``base``, CPU threads, extras."""
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    e.update(
        nnUNet_raw=str(base / "raw"),
        nnUNet_preprocessed=str(base / "preprocessed"),
        nnUNet_results=str(base / "results"),
        nnUNet_n_proc_DA=e.get("nnUNet_n_proc_DA", "2"),
        PATH=f"{VENV / 'bin'}{os.pathsep}{e.get('PATH', '')}",
    )
    e.update(extra)
    return e


def run(cmd: list[str], base: Path, log: Path, **extra: str) -> float:
    """Run an nnU-Net command (logged); returns its wall time (s)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env(base, **extra)).returncode
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {rc}); see {log}")
    return time.perf_counter() - t0


def plan_and_train(base: Path, dataset_id: int, budget_s: float, log: Path, iters_per_epoch: int = 10) -> dict:
    """``nnUNetv2_plan_and_preprocess`` then train 3d_fullres fold ``all`` for ``budget_s`` seconds."""
    planned = list((base / "preprocessed").glob(f"Dataset{dataset_id:03d}_*/nnUNetPlans.json"))
    plan_cmd = ["nnUNetv2_plan_and_preprocess", "-d", str(dataset_id), "-c", "3d_fullres", "-np", "2"]
    plan_s = 0.0 if planned else run([*plan_cmd, "--verify_dataset_integrity"], base, log)
    train_s = run(
        ["nnUNetv2_train", str(dataset_id), "3d_fullres", "all", "-tr", "nnUNetTrainerBudget", "-device", "cpu"],
        base,
        log,
        NNUNET_BUDGET_S=str(budget_s),
        NNUNET_ITERS_PER_EPOCH=str(iters_per_epoch),
    )
    plans = json.loads(next((base / "preprocessed").glob(f"Dataset{dataset_id:03d}_*/nnUNetPlans.json")).read_text())
    conf = plans["configurations"]["3d_fullres"]
    iterations = None
    for line in reversed(log.read_text().splitlines()):
        if "budget:" in line and "iterations in" in line:
            iterations = int(line.split("budget:")[1].split()[0])
            break
    return {
        "plan_s": plan_s,
        "train_s": train_s,
        "iterations": iterations,
        "patch_size": conf["patch_size"],
        "spacing": conf["spacing"],
        "features_per_stage": conf.get("architecture", {}).get("arch_kwargs", {}).get("features_per_stage"),
    }


def predict(base: Path, dataset_id: int, inputs: Path, output: Path, log: Path, mirror: bool) -> dict:
    """``nnUNetv2_predict`` on a folder of ``*_0000.nii.gz`` (CPU), timed, peak RSS of its processes."""
    cmd = [
        str(venv_bin("nnUNetv2_predict")),
        "-i",
        str(inputs),
        "-o",
        str(output),
        "-d",
        str(dataset_id),
        "-c",
        "3d_fullres",
        "-f",
        "all",
        "-tr",
        "nnUNetTrainerBudget",
        "-chk",
        "checkpoint_final.pth",
        "-device",
        "cpu",
        "-npp",
        "1",
        "-nps",
        "1",
    ]
    if not mirror:
        cmd.append("--disable_tta")
    old = {k: os.environ.get(k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "PATH")}
    os.environ.update({k: v for k, v in env(base).items() if k in old})
    try:
        return run_child(ROOT / "benchmarks" / "peak.py", ["--", *cmd], log=log)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def window_count(shape: list[int], patch: list[int], step: float = 0.5) -> int:
    """Windows nnU-Net places over ``shape`` (its ``compute_steps_for_sliding_window``)."""
    import math

    total = 1
    for s, p in zip(shape, patch):
        s = max(s, p)
        n = math.ceil((s - p) / (p * step)) + 1
        total *= n
    return total


def benchmark(args: Any, image: Path, weights: Path, logs: Path) -> dict[str, Any]:
    """The run.py ``nnunet`` section: train briefly on phantoms, predict the CT, medseg beside it."""
    from benchmarks.common import write_nnunet_dataset
    from medseg.data import ct_phantom

    base = args.out / "nnunet"
    ensure_venv(logs / "nnunet_install.log")
    dataset_id = 501
    raw = base / "raw" / f"Dataset{dataset_id}_Phantom"
    results = base / "results" / f"Dataset{dataset_id}_Phantom"
    res: dict[str, Any] = {}
    if not any(results.glob("**/checkpoint_final.pth")):
        shape = (48, 48, 48) if args.quick else (96, 96, 96)
        cases = [(f"ph_{i:03d}", *ct_phantom(shape, (1.5, 1.5, 1.5), seed=200 + i)) for i in range(4)]
        write_nnunet_dataset(raw, cases)
        res["train"] = plan_and_train(base, dataset_id, 30 if args.quick else 120, logs / "nnunet_train.log")
    else:
        plans = json.loads(next((base / "preprocessed").glob(f"Dataset{dataset_id}_*/nnUNetPlans.json")).read_text())
        conf = plans["configurations"]["3d_fullres"]
        res["train"] = {
            "patch_size": conf["patch_size"],
            "spacing": conf["spacing"],
            "features_per_stage": conf.get("architecture", {}).get("arch_kwargs", {}).get("features_per_stage"),
            "reused": True,
        }
    inputs = base / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    for old in inputs.glob("*_0000.nii.gz"):
        old.unlink()  # a previous run's input (another --size)
    (inputs / "ct_0000.nii.gz").symlink_to(image)
    patch = res["train"]["patch_size"]
    res["predict"] = {}
    for mirror in (False, True) if args.nnunet_mirror else (False,):
        key = "mirror" if mirror else "no_mirror"
        shutil.rmtree(base / f"pred_{key}", ignore_errors=True)
        res["predict"][key] = predict(
            base, dataset_id, inputs, base / f"pred_{key}", logs / f"nnunet_predict_{key}.log", mirror
        )
    # medseg with nnU-Net's smallest patch edge: about the same window count on the 1.5 mm grid.
    out = args.out / "pred_medseg_nnpatch.nii.gz"
    res["medseg"] = run_e2e("medseg", image, weights, out, min(patch), logs / "nnunet_medseg.log")
    features = res["train"].get("features_per_stage")
    if features:
        # medseg's own U-Net with nnU-Net's stage widths: about the same network cost per window.
        widths = ["--features", ",".join(str(f) for f in features)]
        res["medseg_nnunet_like"] = run_e2e(
            "medseg", image, weights, out, min(patch), logs / "nnunet_medseg_like.log", widths
        )
    res["windows_nnunet"] = window_count(res["medseg"]["grid"], patch)
    return res


def table(res: dict[str, Any]) -> list[str]:
    """Markdown lines for the nnU-Net section."""
    t, m = res["train"], res["medseg"]
    lines = [
        "### nnU-Net v2 (`nnUNetv2_predict`, 3d_fullres, CPU) on the same CT",
        "",
        f"Plan: patch {t['patch_size']}, spacing {t['spacing']} mm, features {t.get('features_per_stage')}; "
        + (
            "model reused from an earlier run with the same --out. "
            if t.get("reused")
            else f"trained {t.get('iterations')} iterations ({fmt_s(t.get('train_s'))}). "
        )
        + f"nnU-Net windows ≈ {res['windows_nnunet']} "
        f"(×8 with mirroring); medseg (small U-Net) {m['windows']} windows on its grid {tuple(m['grid'])}.",
        "",
        "| contender | total [s] | peak RSS [MiB] | medseg (nnU-Net widths)/contender |",
        "|---|---:|---:|---:|",
        f"| medseg Predictor (small U-Net) | {m['total_s']:.1f} | {m['peak_rss_mib']:.0f} | - |",
    ]
    like = res.get("medseg_nnunet_like")
    if like:
        lines.append(
            f"| medseg Predictor (its U-Net, nnU-Net's widths {t.get('features_per_stage')}) | "
            f"{like['total_s']:.1f} | {like['peak_rss_mib']:.0f} | - |"
        )
    ref = like or m
    for key, r in res["predict"].items():
        lines.append(
            f"| nnUNetv2_predict ({key.replace('_', ' ')}) | {r['total_s']:.1f} | {r['peak_rss_mib']:.0f} | "
            f"{ref['total_s'] / r['total_s']:.2f} |"
        )
    lines.append("")
    return lines


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} s"
