"""Accuracy side by side: medseg's default pipeline, a plain MONAI recipe and nnU-Net v2, same CPU budget.

    python benchmarks/accuracy.py --budget-s 300                          # medseg + MONAI, phantoms
    python benchmarks/accuracy.py --budget-s 300 --nnunet                 # + nnU-Net v2 (its own venv)
    python benchmarks/accuracy.py --task colin27 --budget-s 300 --nnunet  # the real MR task
    python benchmarks/accuracy.py --methods medseg-plan --budget-s 300    # the pipeline medseg plan writes

Tasks (``--task``):

- ``phantom``: seeded multi-organ CT phantoms (``medseg.data.ct_phantom``: liver, spleen,
  left kidney, liver lesion) with varied size, spacing (1.2–2.0 mm in-plane, 2.0–3.0 mm
  slices), orientation (RAS, LPS, oblique), organ size (±15 %), organ contrast (±15 HU) and
  noise (10–35 HU). Training cases use seeds 1000+i, held-out test cases 2000+i.
- ``colin27``: the real labelled T1 MR of ``sample_data/colin27`` (brain, cerebellum, deep
  grey nuclei from its brain mask and AAL atlas); training cases are re-gridded copies of the
  left hemisphere, held-out test cases of the right one (``benchmarks/real_cases.py``, which
  also says why pyradiomics' single-lesion cases cannot be used).

Methods (each trains for ``--budget-s`` seconds of wall clock on the CPU, then predicts
the test cases with its own default inference):

- medseg-plan: ``medseg plan --time-budget BUDGET`` on the training set, probed on this CPU
  (spacing, normalisation, network, patch, schedule, post-processing all planned), then
  that pipeline trained as planned (its ``training.max_time_s`` stops the loop).

- medseg: ``pipelines/ct_organs.yaml`` (5-stage U-Net, Dice+CE, SGD, default augmentation,
  mirroring at test time, post-processing; for ``colin27`` with the task's labels, z-score
  and 2 mm), training and inference patch ``--patch``; the number of
  epochs is set from a short calibration run so the learning-rate schedule spans the
  budget, and ``training.max_time_s`` stops the loop when the budget is spent.
- medseg-bf16: the same, trained with ``training.amp: true`` (bfloat16 autocast on the CPU): the
  evidence for or against bfloat16 as the CPU training default (``medseg.core.precision``).
- MONAI: the tutorial recipe (``benchmarks/monai_recipe.py``) with MONAI's ``UNet``
  (16..256 channels, 2 residual units), sliding window + ``Invertd`` at test time.
- nnU-Net v2: ``nnUNetv2_plan_and_preprocess`` + its default trainer under the same budget
  (``nnUNetTrainerBudget``), ``nnUNetv2_predict`` with its default mirroring.

Reports per-label Dice and HD95 (mm) on the test cases, and checks that medseg and MONAI
inference with the same (medseg-trained) weights agree (Dice per label), once with medseg on
its ``first_voxel`` grid and once on exactly the grid MONAI's ``Spacing`` chose.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.accuracy_report import report
from benchmarks.common import (
    INTENSITY_STEPS,
    LABELS,
    OUT,
    ROOT,
    TARGET_SPACING,
    dice,
    load_average,
    machine,
    medseg_intensity_steps,
    update_section,
    write_nnunet_dataset,
)
from benchmarks.real_cases import COLIN_LABELS, write_case
from medseg.errors import ConfigError


@dataclass(frozen=True)
class Task:
    """What the three methods are asked to segment, and how each pre-processes it."""

    name: str
    labels: dict[int, str]  # 0 = background
    channel: str  # nnU-Net's channel name: "CT" selects its CT normalisation, others z-score
    intensity: str  # "ct" (HU window) or "zscore", for medseg and MONAI
    spacing: float  # medseg's and MONAI's target spacing (mm, isotropic)
    cleaned: tuple[int, ...]  # labels medseg reduces to their largest component
    monai_cleaned: tuple[int, ...]  # the same for the MONAI recipe's KeepLargestConnectedComponent
    data: str  # one line for the report
    ids: tuple[str, str]  # case id prefixes of the training and the test cases
    nnunet_dataset: tuple[int, str]  # nnU-Net dataset number and name

    @property
    def foreground(self) -> list[int]:
        return [k for k in self.labels if k]


TASKS = {
    "phantom": Task(
        "phantom",
        LABELS,
        "CT",
        "ct",
        TARGET_SPACING,
        (1, 2, 3),
        (1, 2, 3, 4),  # the tutorial's default: every label (one lesion per phantom)
        "phantom CTs (varied size, spacing, orientation, organ size/contrast, noise)",
        ("ph", "ts"),
        (502, "Phantoms"),
    ),
    "colin27": Task(
        "colin27",
        COLIN_LABELS,
        "T1",
        "zscore",
        2.0,
        (1, 2),
        (1, 2),  # deep grey nuclei are several structures
        "re-gridded hemispheres of the real Colin27 T1 MR, training cases from the left hemisphere, "
        "held-out cases from the right one (rotation ≤ 10°, spacing 1.2–2.2 mm, gain, offset, noise)",
        ("cl", "cr"),
        (503, "Colin27"),
    ),
}


def phantom_case(seed: int, scale: float = 1.0, slice_mm: tuple[float, float] = (2.0, 3.0)) -> tuple[Any, Any]:
    """One varied CT phantom ``(image, label)``: size, spacing, orientation, organ size/HU, noise.

    ``slice_mm``: range of the slice spacing; thicker slices than the default 2–3 mm get
    proportionally fewer of them (the same body height).
    """
    from medseg.core import make_affine
    from medseg.data import ct_phantom
    from medseg.data.phantoms import ORGANS, Organ

    rng = np.random.default_rng(seed)
    shape = tuple(int(v * scale) for v in rng.integers([80, 80, 40], [113, 113, 65]))
    inplane = float(rng.uniform(1.2, 2.0))
    spacing = (inplane, inplane, float(rng.uniform(*slice_mm)))
    if slice_mm != (2.0, 3.0):
        shape = (shape[0], shape[1], max(4, round(shape[2] * 2.5 / float(np.mean(slice_mm)))))
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


def make_data(
    root: Path, task: Task, n_train: int, n_test: int, scale: float
) -> tuple[Path, list[tuple[str, Path, Path]]]:
    """nnU-Net-layout training set under ``root/train`` and test cases under ``root/test``.

    Files already there are reused (every case is deterministic for its seed).
    """
    from medseg.io import write

    train = root / "train"
    train_ids = [f"{task.ids[0]}_{1000 + i}" for i in range(n_train)]
    if not (train / "dataset.json").exists():
        if task.name == "phantom":
            cases = [(cid, *phantom_case(1000 + i, scale)) for i, cid in enumerate(train_ids)]
        else:
            for i, cid in enumerate(train_ids):
                write_case(
                    1000 + i, "left", train / "imagesTr" / f"{cid}_0000.nii.gz", train / "labelsTr" / f"{cid}.nii.gz"
                )
            cases = [(cid, None, None) for cid in train_ids]
        write_nnunet_dataset(train, cases, labels=task.labels, channel=task.channel)
    tests = []
    (root / "test" / "images").mkdir(parents=True, exist_ok=True)
    (root / "test" / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n_test):
        cid = f"{task.ids[1]}_{2000 + i}"
        img, lab = root / "test" / "images" / f"{cid}_0000.nii.gz", root / "test" / "labels" / f"{cid}.nii.gz"
        if not lab.exists():
            if task.name == "phantom":
                image, label = phantom_case(2000 + i, scale)
                write(image, img)
                write(label, lab)
            else:
                write_case(2000 + i, "right", img, lab)
        tests.append((cid, img, lab))
    return train, tests


# ---- medseg ---------------------------------------------------------------------------------------
def medseg_pipeline(task: Task) -> Any:
    """``pipelines/ct_organs.yaml``; for other tasks with their labels, intensity and spacing."""
    from medseg.pipeline import Pipeline

    source = ROOT / "pipelines" / "ct_organs.yaml"
    pipeline = Pipeline.from_yaml(source)
    if task.name == "phantom":
        return pipeline
    config = pipeline.to_dict()
    config["name"] = f"{config['name']}-as-{task.name}"
    config["input"] = {
        "modality": "MR",
        "channels": [task.channel],
        "labels": {k: v for k, v in task.labels.items() if k},
    }
    config["preprocess"] = [
        {"reorient": {"axcodes": "RAS"}},
        {"resample": {"spacing": [task.spacing] * 3, "mode": "linear", "anisotropic": True}},
        *INTENSITY_STEPS[task.intensity],
    ]
    config["postprocess"] = [
        {"keep_largest_component": {"per_label": True, "connectivity": 26, "labels": list(task.cleaned)}},
        {"remove_small_components": {"min_size_mm3": 50.0, "labels": list(task.cleaned)}},
        {"fill_holes": {"mode": "3d"}},
    ]
    return Pipeline.from_dict(config, source=source)


def train_medseg(
    task: Task, train: Path, work: Path, budget_s: float, patch: int, amp: bool | None = None, seed: int = 0
) -> tuple[Any, Path, dict]:
    """Calibrate seconds per iteration, then train the task's pipeline for about ``budget_s``.

    ``amp``: ``training.amp`` (None: the default; True: bfloat16 on this CPU, the ``medseg-bf16`` row).
    """
    from medseg.pipeline import Pipeline

    pipeline = medseg_pipeline(task)
    common = {
        "patch_size": (patch,) * 3,
        "device": "cpu",
        "progress": False,
        "cache_dir": work / "cache",
        "iterations_per_epoch": 10,
        "amp": amp,
        "seed": seed,
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
    # small cases would be mostly zero padding, which the instance norms never saw in training
    config = pipeline.to_dict()
    config["inference"]["patch_size"] = [patch] * 3
    pipeline = Pipeline.from_dict(config, source=pipeline.source)
    return pipeline, result.best_checkpoint, {"train_s": seconds, "iterations": result.epochs * 10}


def train_medseg_plan(train: Path, work: Path, budget_s: float, seed: int = 0) -> tuple[Any, Path, dict]:
    """``medseg plan --time-budget`` on the training set (probed on this CPU), then train that pipeline as planned.

    Planned for training on all cases without validation (``n_folds=0``), as the other methods
    train; the planned ``training.max_time_s`` stops the loop. The planning time is reported
    apart from the training time.
    """
    from medseg.pipeline import Pipeline
    from medseg.planning.planner import PlanOptions
    from medseg.planning.workflow import plan_dataset

    t0 = time.perf_counter()
    files = plan_dataset(train, work / "plan", PlanOptions(device="cpu", time_budget_s=budget_s, n_folds=0))
    plan_s = time.perf_counter() - t0
    pipeline = Pipeline.from_yaml(files.pipeline)
    t0 = time.perf_counter()
    result = pipeline.train(
        train, work / "run", fold=None, resume=False, progress=False, cache_dir=work / "cache", seed=seed
    )
    seconds = time.perf_counter() - t0
    s = pipeline.training_config
    conf = files.plan.configurations[files.plan.chosen]
    chose = (
        f"{files.plan.chosen}, spacing {[round(v, 2) for v in conf.spacing]} mm, patch {conf.patch}, batch {conf.batch}, "
        f"widths {list(conf.network.features)}, {s.max_epochs} × {s.iterations_per_epoch} iterations planned, "
        f"{[next(iter(p)) for p in pipeline.to_dict()['preprocess']]}"
    )
    stats = {
        "train_s": seconds,
        "iterations": result.epochs * s.iterations_per_epoch,
        "planned_iterations": conf.schedule.iterations,
        "plan_s": plan_s,
        "plan": chose,
        "pipeline": str(files.pipeline),
    }
    return pipeline, result.best_checkpoint, stats


def predict_medseg(pipeline: Any, checkpoint: Path, tests: list, out: Path) -> dict[str, Path]:
    from medseg.io import write

    predictor = pipeline.predictor([checkpoint], device="cpu")
    paths = {}
    for cid, img, _ in tests:
        paths[cid] = out / f"{cid}.nii.gz"
        write(predictor.predict(img), paths[cid])
    return paths


# ---- MONAI ----------------------------------------------------------------------------------------
def monai_network(n_classes: int, seed: int = 0) -> torch.nn.Module:
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    return UNet(3, 1, n_classes, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)


def train_monai(task: Task, train: Path, budget_s: float, patch: int, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    from benchmarks.monai_recipe import train as monai_train

    cases = [(p, train / "labelsTr" / p.name.replace("_0000", "")) for p in sorted((train / "imagesTr").glob("*"))]
    net = monai_network(len(task.labels), seed)
    t0 = time.perf_counter()
    stats = monai_train(
        net,
        cases,
        patch_size=(patch,) * 3,
        budget_s=budget_s,
        spacing=task.spacing,
        intensity=task.intensity,
        seed=seed,
    )
    return net, {"train_s": time.perf_counter() - t0, "iterations": stats["iterations"]}


def predict_monai(task: Task, net: torch.nn.Module, tests: list, out: Path, patch: int) -> dict[str, Path]:
    paths = {}
    for cid, img, _ in tests:
        paths[cid] = out / f"{cid}.nii.gz"
        run_monai_task(task, img, net, paths[cid], patch)
    return paths


def run_monai_task(task: Task, image: Path, net: torch.nn.Module, out: Path, patch: int) -> dict:
    """The MONAI inference pipeline of ``benchmarks/e2e.py`` with the task's settings."""
    from benchmarks.e2e import run_monai

    return run_monai(
        image,
        net,
        out,
        (patch,) * 3,
        "cpu",
        len(task.labels),
        spacing=task.spacing,
        intensity=task.intensity,
        keep_largest=list(task.monai_cleaned),
    )


# ---- evaluation -----------------------------------------------------------------------------------
def evaluate(task: Task, paths: dict[str, Path], tests: list) -> dict[str, dict[str, float]]:
    """Mean Dice and HD95 (mm) per label over the test cases."""
    from medseg.io import read
    from medseg.metrics import evaluate_case

    rows: dict[int, list[dict]] = {k: [] for k in task.foreground}
    for cid, _, lab in tests:
        ref = read(lab)
        pred = read(paths[cid])
        if pred.spatial_shape != ref.spatial_shape:
            raise RuntimeError(
                f"{paths[cid]}: shape {pred.spatial_shape} differs from the reference {ref.spatial_shape}"
            )
        for row in evaluate_case(pred.numpy()[0], ref.numpy()[0], labels=task.foreground, spacing=ref.spacing):
            rows[int(row["label"])].append(row)
    out = {}
    for k, rs in rows.items():
        hd = [r["hausdorff95_mm"] for r in rs if np.isfinite(r["hausdorff95_mm"])]
        out[task.labels[k]] = {
            "dice": float(np.mean([r["dice"] for r in rs])),
            "hd95_mm": float(np.mean(hd)) if hd else float("nan"),
            "hd95_missing": len(rs) - len(hd),
        }
    out["mean"] = {
        "dice": float(np.mean([out[task.labels[k]]["dice"] for k in task.foreground])),
        "hd95_mm": float(np.nanmean([out[task.labels[k]]["hd95_mm"] for k in task.foreground])),
    }
    return out


def agreement(task: Task, pipeline: Any, checkpoint: Path, tests: list, out: Path, patch: int) -> dict[str, Any]:
    """Same medseg-trained weights through medseg's Predictor and MONAI's pipeline.

    medseg runs twice: resampled with ``grid="first_voxel"`` (MONAI ``Spacing``'s rule when a
    corner of the input is the grid's minimum) and with ``resample_to`` exactly the grid
    MONAI's run chose (it centres the grid when no corner qualifies, e.g. for oblique inputs).
    medseg runs at its default precision (``inference.precision: auto``: bfloat16 on a CPU
    that computes it), MONAI in float32.

    Returns:
        ``{"first_voxel": {label: mean Dice}, "monai_grid": {...}, "differing_voxels":
        {variant: [per case]}, "voxels": [foreground voxels of MONAI's map per case]}``.
    """
    from medseg.core import Grid, build_step
    from medseg.inference import Predictor
    from medseg.io import read, write

    net = pipeline.predictor([checkpoint], device="cpu").networks[0]

    def predictor(resample: Any) -> Predictor:
        return Predictor(
            net,
            preprocess=[build_step("reorient", axcodes="RAS"), resample, *medseg_intensity_steps(task.intensity)],
            patch_size=(patch,) * 3,
            device="cpu",
            postprocess=[
                build_step("keep_largest_component", per_label=True, connectivity=26, labels=list(task.monai_cleaned))
            ],
        )

    first_voxel = predictor(build_step("resample", spacing=(task.spacing,) * 3, mode="linear", grid="first_voxel"))
    variants = ("first_voxel", "monai_grid")
    scores: dict[str, dict[int, list[float]]] = {v: {k: [] for k in task.foreground} for v in variants}
    differing: dict[str, list[int]] = {v: [] for v in variants}
    voxels = []
    for cid, img, _ in tests:
        monai_run = run_monai_task(task, img, net, out / f"{cid}_monai.nii.gz", patch)
        theirs = read(out / f"{cid}_monai.nii.gz").numpy()[0]
        voxels.append(int((theirs > 0).sum()))
        grid = Grid(tuple(monai_run["grid"]), np.asarray(monai_run["affine"]))
        # MONAI's Spacing pads with the border values ("border"); resample_to does the same with fill=None
        exact = predictor(build_step("resample_to", reference=grid, mode="linear", fill=None))
        for variant, pred in (("first_voxel", first_voxel), ("monai_grid", exact)):
            mine = pred.predict(img)
            write(mine, out / f"{cid}_medseg_{variant}.nii.gz")
            ours = mine.numpy()[0]
            differing[variant].append(int((ours != theirs).sum()))
            for k in task.foreground:
                scores[variant][k].append(dice(ours, theirs, k))
    res: dict[str, Any] = {v: {task.labels[k]: float(np.mean(d)) for k, d in scores[v].items()} for v in variants}
    res["differing_voxels"] = differing
    res["voxels"] = voxels
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(TASKS), default="phantom", help="what to segment (see above)")
    ap.add_argument("--budget-s", type=float, default=300.0, help="training wall-clock budget per method (s)")
    ap.add_argument("--n-train", type=int, default=8)
    ap.add_argument("--n-test", type=int, default=4)
    ap.add_argument("--patch", type=int, default=64, help="training and inference patch edge (voxels)")
    ap.add_argument("--scale", type=float, default=1.0, help="phantom size factor (smaller: faster)")
    ap.add_argument(
        "--methods", default="medseg,monai", help="comma list of medseg, medseg-bf16, medseg-plan, monai, nnunet"
    )
    ap.add_argument("--nnunet", action="store_true", help="add nnU-Net v2")
    ap.add_argument("--nnunet-tta", action=argparse.BooleanOptionalAction, default=True, help="nnU-Net mirroring")
    ap.add_argument("--keep-previous", action="store_true", help="keep other methods' results from OUT/accuracy.json")
    ap.add_argument("--out", type=Path, default=None, help="work folder (default benchmarks/out/accuracy[_TASK])")
    ap.add_argument(
        "--seeds", default="0", help="training seeds, comma list (each method trains once per seed; nnU-Net: repeats)"
    )
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    args = ap.parse_args()
    seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    task = TASKS[args.task]
    methods = [m for m in args.methods.split(",") if m] + (["nnunet"] if args.nnunet else [])
    unknown = sorted(set(methods) - {"medseg", "medseg-bf16", "medseg-plan", "monai", "nnunet"})
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from medseg, medseg-bf16, medseg-plan, monai, nnunet")
    t0 = time.perf_counter()
    command = ("python benchmarks/accuracy.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])).strip()
    out = (args.out or OUT / ("accuracy" if task.name == "phantom" else f"accuracy_{task.name}")).resolve()
    train, tests = make_data(out / "data", task, args.n_train, args.n_test, args.scale)
    res: dict[str, Any] = {
        "seeds": seeds,
        "machine": machine(),
        "load_before": load_average(),
        "task": task.name,
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
        runs = []
        for seed in seeds:
            tag = name if len(seeds) == 1 else f"{name}_seed{seed}"
            pred_dir = out / f"pred_{tag}"
            pred_dir.mkdir(parents=True, exist_ok=True)
            print(f"[{time.perf_counter() - t0:7.1f} s] {name}, seed {seed} ...", file=sys.stderr, flush=True)
            try:
                stats, paths = run_method(name, task, res, out / tag, train, tests, pred_dir, args, seed)
            except (ConfigError, RuntimeError, OSError) as exc:  # e.g. training diverged: a result, not a crash
                res["failed"][f"{name} (seed {seed})"] = str(exc)
                continue
            runs.append({"seed": seed, "train": stats, "metrics": evaluate(task, paths, tests)})
        if runs:
            res["methods"][name] = {"runs": runs, "command": command}
    res["load_after"] = load_average()
    res["wall_s"] = time.perf_counter() - t0
    res["command"] = command
    (out / "accuracy.json").write_text(json.dumps(res, indent=1))
    text = report(task, res, command)
    print(text)
    update_section(args.results, "accuracy" if task.name == "phantom" else f"accuracy-{task.name}", text)


def run_method(
    name: str,
    task: Task,
    res: dict[str, Any],
    out: Path,
    train: Path,
    tests: list,
    pred_dir: Path,
    args: Any,
    seed: int = 0,
) -> tuple[dict, dict[str, Path]]:
    """Train method ``name`` under the budget with ``seed`` and predict the test cases (``out``: its work folder).

    The first medseg run also checks medseg's and MONAI's inference agree on the same weights.
    """
    if name in ("medseg", "medseg-bf16"):
        amp = True if name == "medseg-bf16" else None  # bfloat16 autocast on the CPU
        pipeline, ckpt, stats = train_medseg(task, train, out, args.budget_s, args.patch, amp=amp, seed=seed)
        paths = predict_medseg(pipeline, ckpt, tests, pred_dir)
        if name == "medseg" and "agreement" not in res:
            agree_dir = out.parent / "agreement"
            agree_dir.mkdir(parents=True, exist_ok=True)
            res["agreement"] = agreement(task, pipeline, ckpt, tests, agree_dir, args.patch)
    elif name == "medseg-plan":
        pipeline, ckpt, stats = train_medseg_plan(train, out, args.budget_s, seed)
        paths = predict_medseg(pipeline, ckpt, tests, pred_dir)
    elif name == "monai":
        net, stats = train_monai(task, train, args.budget_s, args.patch, seed)
        paths = predict_monai(task, net, tests, pred_dir, args.patch)
    else:
        stats, paths = run_nnunet(task, out, train, tests, args.budget_s, pred_dir, args.nnunet_tta)
    return stats, paths


def run_nnunet(
    task: Task, out: Path, train: Path, tests: list, budget_s: float, pred_dir: Path, tta: bool = True
) -> tuple[dict, dict[str, Path]]:
    """Plan, train under the budget and predict the test cases with nnU-Net v2 (its own venv)."""
    import shutil

    from benchmarks import nnunet

    base = out / "nnunet"
    logs = out / "logs"
    nnunet.ensure_venv(logs / "nnunet_install.log")
    dataset_id, dataset_name = task.nnunet_dataset
    raw = base / "raw" / f"Dataset{dataset_id}_{dataset_name}"
    if not raw.exists():
        shutil.copytree(train, raw)
    stats = nnunet.plan_and_train(base, dataset_id, budget_s, logs / "nnunet_train.log")
    inputs = train.parent / "test" / "images"
    nnunet.predict(base, dataset_id, inputs, pred_dir, logs / "nnunet_predict.log", mirror=tta)
    return stats, {cid: pred_dir / f"{cid}.nii.gz" for cid, _, _ in tests}


if __name__ == "__main__":
    main()
