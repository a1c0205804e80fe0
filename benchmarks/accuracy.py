"""Accuracy side by side: medseg's default pipeline, a plain MONAI recipe and nnU-Net v2, same CPU budget.

    python benchmarks/accuracy.py --budget-s 300            # medseg + MONAI
    python benchmarks/accuracy.py --budget-s 300 --nnunet   # + nnU-Net v2 (its own venv)

Data: seeded multi-organ CT phantoms (``medseg.data.ct_phantom``: liver, spleen, left kidney,
liver lesion) with varied size, spacing (1.2–2.0 mm in-plane, 2.0–3.0 mm slices),
orientation (RAS, LPS, oblique), organ size (±15 %), organ contrast (±15 HU) and noise
(10–35 HU). Training cases use seeds 1000+i, held-out test cases 2000+i.

The real labelled cases of ``sample_data/`` (a lung CT with a nodule, a brain MR with a
lesion) are single cases whose labels are not among the phantom organs: a network trained
on phantoms cannot segment them, and one case can be neither split nor cross-validated, so
they are not part of this study.

Methods (each trains for ``--budget-s`` seconds of wall clock on the CPU, then predicts
the test cases with its own default inference):

- medseg: ``pipelines/ct_organs.yaml`` (5-stage U-Net, Dice+CE, SGD, default augmentation,
  mirroring at test time, post-processing), training and inference patch ``--patch``; the number of
  epochs is set from a short calibration run so the learning-rate schedule spans the
  budget, and ``training.max_time_s`` stops the loop when the budget is spent.
- MONAI: the tutorial recipe (``benchmarks/monai_recipe.py``) with MONAI's ``UNet``
  (16..256 channels, 2 residual units), sliding window + ``Invertd`` at test time.
- nnU-Net v2: ``nnUNetv2_plan_and_preprocess`` + its default trainer under the same budget
  (``nnUNetTrainerBudget``), ``nnUNetv2_predict`` with its default mirroring.

Reports per-label Dice and HD95 (mm) on the test cases, and checks that medseg and MONAI
inference with the same (medseg-trained) weights agree (Dice per label).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    HU_WINDOW,
    LABELS,
    OUT,
    ROOT,
    TARGET_SPACING,
    dice,
    load_average,
    machine,
    update_section,
    write_nnunet_dataset,
)

ORGAN_LABELS = [k for k in LABELS if k]


def phantom_case(seed: int, scale: float = 1.0) -> tuple[Any, Any]:
    """One varied CT phantom ``(image, label)``: size, spacing, orientation, organ size/HU, noise."""
    from medseg.core import make_affine
    from medseg.data import ct_phantom
    from medseg.data.phantoms import ORGANS, Organ

    rng = np.random.default_rng(seed)
    shape = tuple(int(v * scale) for v in rng.integers([80, 80, 40], [113, 113, 65]))
    inplane = float(rng.uniform(1.2, 2.0))
    spacing = (inplane, inplane, float(rng.uniform(2.0, 3.0)))
    kind = seed % 3
    if kind == 0:
        direction = np.eye(3)
    elif kind == 1:
        direction = np.diag([-1.0, -1.0, 1.0])  # LPS
    else:
        a, b = np.deg2rad(rng.uniform(-20, 20)), np.deg2rad(rng.uniform(-10, 10))
        rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
        direction = rz @ rx
    origin = tuple(rng.uniform(-150, -50, 3))
    organs = tuple(
        Organ(
            o.name, o.label, o.centre, tuple(r * rng.uniform(0.85, 1.15) for r in o.radii), o.hu + rng.uniform(-15, 15)
        )
        for o in ORGANS
    )
    return ct_phantom(
        shape,
        spacing,
        affine=make_affine(spacing, origin, direction),
        organs=organs,
        noise_hu=float(rng.uniform(10, 35)),
        seed=seed,
    )


def make_data(root: Path, n_train: int, n_test: int, scale: float) -> tuple[Path, list[tuple[str, Path, Path]]]:
    """nnU-Net-layout training set under ``root/train`` and test cases under ``root/test``."""
    from medseg.io import write

    train = root / "train"
    if not (train / "dataset.json").exists():
        write_nnunet_dataset(train, [(f"ph_{1000 + i}", *phantom_case(1000 + i, scale)) for i in range(n_train)])
    tests = []
    (root / "test" / "images").mkdir(parents=True, exist_ok=True)
    (root / "test" / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n_test):
        cid = f"ts_{2000 + i}"
        img, lab = root / "test" / "images" / f"{cid}_0000.nii.gz", root / "test" / "labels" / f"{cid}.nii.gz"
        if not lab.exists():
            image, label = phantom_case(2000 + i, scale)
            write(image, img)
            write(label, lab)
        tests.append((cid, img, lab))
    return train, tests


# ---- medseg ---------------------------------------------------------------------------------------
def train_medseg(train: Path, work: Path, budget_s: float, patch: int) -> tuple[Any, Path, dict]:
    """Calibrate seconds per iteration, then train ``ct_organs.yaml`` for about ``budget_s``."""
    from medseg.pipeline import Pipeline

    pipeline = Pipeline.from_yaml(ROOT / "pipelines" / "ct_organs.yaml")
    common = {
        "patch_size": (patch,) * 3,
        "device": "cpu",
        "progress": False,
        "cache_dir": work / "cache",
        "iterations_per_epoch": 10,
    }
    # Two epochs: the first one carries one-off start-up costs; the second gives the steady rate.
    calib = pipeline.train(train, work / "calibration", fold=None, resume=False, max_epochs=2, **common)
    with calib.log_csv.open() as f:
        per_iteration = float(list(csv.DictReader(f))[-1]["time_s"]) / 10
    epochs = max(1, int(budget_s / (per_iteration * 10)))
    t0 = time.perf_counter()
    # the calibrated epochs spread the learning-rate schedule over the budget; max_time_s enforces it
    result = pipeline.train(
        train, work / "run", fold=None, resume=False, max_epochs=epochs, max_time_s=budget_s, **common
    )
    seconds = time.perf_counter() - t0
    # infer with the training patch, as MONAI's recipe and nnU-Net do: a larger window than the
    # small phantoms would be mostly zero padding, which the instance norms never saw in training
    config = pipeline.to_dict()
    config["inference"]["patch_size"] = [patch] * 3
    pipeline = Pipeline.from_dict(config, source=pipeline.source)
    return pipeline, result.best_checkpoint, {"train_s": seconds, "iterations": result.epochs * 10}


def predict_medseg(pipeline: Any, checkpoint: Path, tests: list, out: Path) -> dict[str, Path]:
    from medseg.io import write

    predictor = pipeline.predictor([checkpoint], device="cpu")
    paths = {}
    for cid, img, _ in tests:
        paths[cid] = out / f"{cid}.nii.gz"
        write(predictor.predict(img), paths[cid])
    return paths


# ---- MONAI ----------------------------------------------------------------------------------------
def monai_network() -> torch.nn.Module:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    return UNet(3, 1, len(LABELS), channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)


def train_monai(train: Path, budget_s: float, patch: int) -> tuple[torch.nn.Module, dict]:
    from benchmarks.monai_recipe import train as monai_train

    cases = [(p, train / "labelsTr" / p.name.replace("_0000", "")) for p in sorted((train / "imagesTr").glob("*"))]
    net = monai_network()
    t0 = time.perf_counter()
    stats = monai_train(net, cases, patch_size=(patch,) * 3, budget_s=budget_s)
    return net, {"train_s": time.perf_counter() - t0, "iterations": stats["iterations"]}


def predict_monai(net: torch.nn.Module, tests: list, out: Path, patch: int) -> dict[str, Path]:
    from benchmarks.e2e import run_monai

    paths = {}
    for cid, img, _ in tests:
        paths[cid] = out / f"{cid}.nii.gz"
        run_monai(img, net, paths[cid], (patch,) * 3, "cpu")
    return paths


# ---- evaluation -----------------------------------------------------------------------------------
def evaluate(paths: dict[str, Path], tests: list) -> dict[str, dict[str, float]]:
    """Mean Dice and HD95 (mm) per organ over the test cases."""
    from medseg.io import read
    from medseg.metrics import evaluate_case

    rows: dict[int, list[dict]] = {k: [] for k in ORGAN_LABELS}
    for cid, _, lab in tests:
        ref = read(lab)
        pred = read(paths[cid])
        if pred.spatial_shape != ref.spatial_shape:
            raise RuntimeError(
                f"{paths[cid]}: shape {pred.spatial_shape} differs from the reference {ref.spatial_shape}"
            )
        for row in evaluate_case(pred.numpy()[0], ref.numpy()[0], labels=ORGAN_LABELS, spacing=ref.spacing):
            rows[int(row["label"])].append(row)
    out = {}
    for k, rs in rows.items():
        hd = [r["hausdorff95_mm"] for r in rs if np.isfinite(r["hausdorff95_mm"])]
        out[LABELS[k]] = {
            "dice": float(np.mean([r["dice"] for r in rs])),
            "hd95_mm": float(np.mean(hd)) if hd else float("nan"),
            "hd95_missing": len(rs) - len(hd),
        }
    out["mean"] = {
        "dice": float(np.mean([out[LABELS[k]]["dice"] for k in ORGAN_LABELS])),
        "hd95_mm": float(np.nanmean([out[LABELS[k]]["hd95_mm"] for k in ORGAN_LABELS])),
    }
    return out


def agreement(pipeline: Any, checkpoint: Path, tests: list, out: Path, patch: int) -> dict[str, float]:
    """Same medseg-trained weights through medseg's Predictor and MONAI's pipeline: Dice per organ."""
    from benchmarks.e2e import run_monai
    from medseg.core import build_step
    from medseg.inference import Predictor
    from medseg.io import read, write

    net = pipeline.predictor([checkpoint], device="cpu").networks[0]
    # the MONAI pipeline's steps, resampled on MONAI Spacing's grid (first voxel centre kept)
    predictor = Predictor(
        net,
        preprocess=[
            build_step("reorient", axcodes="RAS"),
            build_step("resample", spacing=(TARGET_SPACING,) * 3, mode="linear", grid="first_voxel"),
            build_step("clip", low=HU_WINDOW[0], high=HU_WINDOW[1]),
            build_step("scale_intensity", low=HU_WINDOW[0], high=HU_WINDOW[1]),
        ],
        patch_size=(patch,) * 3,
        device="cpu",
        postprocess=[build_step("keep_largest_component", per_label=True, connectivity=26)],
    )
    scores: dict[int, list[float]] = {k: [] for k in ORGAN_LABELS}
    for cid, img, _ in tests:
        m = predictor.predict(img)
        write(m, out / f"{cid}_medseg.nii.gz")
        run_monai(img, net, out / f"{cid}_monai.nii.gz", (patch,) * 3, "cpu")
        o = read(out / f"{cid}_monai.nii.gz")
        for k in ORGAN_LABELS:
            scores[k].append(dice(m.numpy()[0], o.numpy()[0], k))
    return {LABELS[k]: float(np.mean(v)) for k, v in scores.items()}


def report(res: dict[str, Any], command: str) -> str:
    mach = res["machine"]
    lines = [
        f"Command: `{command}` — commit {mach['commit']}, {mach['date']}, run took {res['wall_s']:.0f} s.",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, torch {mach['torch']}, MONAI {mach['monai']}; load average "
        f"before/after {res['load_before']} / {res['load_after']}.",
        f"Data: {res['n_train']} training and {res['n_test']} held-out phantom CTs (varied size, spacing, orientation, "
        f"organ size/contrast, noise); training budget {res['budget_s']:.0f} s per method on the CPU, patch {res['patch']}³.",
        "",
        "| method | train [s] | iterations | "
        + " | ".join(f"{LABELS[k]} Dice / HD95" for k in ORGAN_LABELS)
        + " | mean Dice |",
        "|---|---:|---:|" + "---:|" * (len(ORGAN_LABELS) + 1),
    ]
    for name, r in res["methods"].items():
        cells = [
            f"{r['metrics'][LABELS[k]]['dice']:.3f} / {r['metrics'][LABELS[k]]['hd95_mm']:.1f}" for k in ORGAN_LABELS
        ]
        it = r["train"].get("iterations")
        lines.append(
            f"| {name} | {r['train']['train_s']:.0f} | {it if it is not None else '-'} | "
            + " | ".join(cells)
            + f" | {r['metrics']['mean']['dice']:.3f} |"
        )
    if "agreement" in res:
        agree = ", ".join(f"{k} {v:.4f}" for k, v in res["agreement"].items())
        lines += ["", f"medseg vs MONAI inference, same medseg-trained weights, Dice per organ: {agree}."]
    for cmd in res.get("previous_runs", []):
        lines += [
            "",
            f"Results of methods not re-run above come from the earlier run `{cmd}` (same data, same budget).",
        ]
    for name, err in res.get("failed", {}).items():
        lines += ["", f"{name}: did not complete — {err}"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=300.0, help="training wall-clock budget per method (s)")
    ap.add_argument("--n-train", type=int, default=8)
    ap.add_argument("--n-test", type=int, default=4)
    ap.add_argument("--patch", type=int, default=64, help="training and inference patch edge (voxels)")
    ap.add_argument("--scale", type=float, default=1.0, help="phantom size factor (smaller: faster)")
    ap.add_argument("--methods", default="medseg,monai", help="comma list of medseg, monai, nnunet")
    ap.add_argument("--nnunet", action="store_true", help="add nnU-Net v2")
    ap.add_argument("--nnunet-tta", action=argparse.BooleanOptionalAction, default=True, help="nnU-Net mirroring")
    ap.add_argument("--keep-previous", action="store_true", help="keep other methods' results from OUT/accuracy.json")
    ap.add_argument("--out", type=Path, default=OUT / "accuracy")
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m] + (["nnunet"] if args.nnunet else [])
    t0 = time.perf_counter()
    out = args.out.resolve()
    train, tests = make_data(out / "data", args.n_train, args.n_test, args.scale)
    res: dict[str, Any] = {
        "machine": machine(),
        "load_before": load_average(),
        "budget_s": args.budget_s,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "patch": args.patch,
        "methods": {},
        "failed": {},
    }
    previous = out / "accuracy.json"
    if args.keep_previous and previous.exists():
        # Methods not run this time keep their results from the previous run (same data and budget).
        old = json.loads(previous.read_text())
        res["methods"] = {k: v for k, v in old["methods"].items() if k not in methods}
        res["previous_runs"] = [*old.get("previous_runs", []), old.get("command", "?")]
        if "agreement" in old and "medseg" not in methods:
            res["agreement"] = old["agreement"]
    for name in methods:
        pred_dir = out / f"pred_{name}"
        pred_dir.mkdir(parents=True, exist_ok=True)
        print(f"[{time.perf_counter() - t0:7.1f} s] {name} ...", file=sys.stderr, flush=True)
        if name == "medseg":
            pipeline, ckpt, stats = train_medseg(train, out / "medseg", args.budget_s, args.patch)
            paths = predict_medseg(pipeline, ckpt, tests, pred_dir)
            agree_dir = out / "agreement"
            agree_dir.mkdir(exist_ok=True)
            res["agreement"] = agreement(pipeline, ckpt, tests, agree_dir, args.patch)
        elif name == "monai":
            net, stats = train_monai(train, args.budget_s, args.patch)
            paths = predict_monai(net, tests, pred_dir, args.patch)
        elif name == "nnunet":
            try:
                stats, paths = run_nnunet(out, train, tests, args.budget_s, pred_dir, args.nnunet_tta)
            except (RuntimeError, OSError) as exc:
                res["failed"]["nnunet"] = str(exc)
                continue
        else:
            raise SystemExit(f"--methods: unknown {name!r}; choose from medseg, monai, nnunet")
        res["methods"][name] = {"train": stats, "metrics": evaluate(paths, tests)}
    res["load_after"] = load_average()
    res["wall_s"] = time.perf_counter() - t0
    command = "python benchmarks/accuracy.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    res["command"] = command.strip()
    (out / "accuracy.json").write_text(json.dumps(res, indent=1))
    text = report(res, command.strip())
    print(text)
    update_section(args.results, "accuracy", text)


def run_nnunet(
    out: Path, train: Path, tests: list, budget_s: float, pred_dir: Path, tta: bool = True
) -> tuple[dict, dict[str, Path]]:
    """Plan, train under the budget and predict the test cases with nnU-Net v2 (its own venv)."""
    import shutil

    from benchmarks import nnunet

    base = out / "nnunet"
    logs = out / "logs"
    nnunet.ensure_venv(logs / "nnunet_install.log")
    dataset_id = 502
    raw = base / "raw" / f"Dataset{dataset_id}_Phantoms"
    if not raw.exists():
        shutil.copytree(train, raw)
    stats = nnunet.plan_and_train(base, dataset_id, budget_s, logs / "nnunet_train.log")
    inputs = out / "data" / "test" / "images"
    nnunet.predict(base, dataset_id, inputs, pred_dir, logs / "nnunet_predict.log", mirror=tta)
    return stats, {cid: pred_dir / f"{cid}.nii.gz" for cid, _, _ in tests}


if __name__ == "__main__":
    main()
