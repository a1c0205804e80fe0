"""nnU-Net v2's planner and ``medseg plan`` on the same datasets, side by side.

    python benchmarks/plan_vs_nnunet.py                       # 4 datasets, writes the plan-vs-nnunet block
    python benchmarks/plan_vs_nnunet.py --datasets phantom    # only the phantom ones

Datasets (the accuracy study's tasks, ``benchmarks/accuracy.py``, each at two spacings):

- ``phantom``: the study's CT phantoms (``--scale 0.5``: 1.2–2.0 mm in-plane, 2–3 mm slices);
- ``phantom-thick``: the same phantoms with 5–7 mm slices (proportionally fewer of them);
- ``colin27``: the study's Colin27 left-hemisphere cases (1.2–2.2 mm, rotated ≤ 10°);
- ``colin27-thick``: the same with 4.5–6 mm along the third axis.

Planners:

- nnU-Net v2 2.8.1 (``benchmarks/nnunet.py``'s venv): ``nnUNetv2_extract_fingerprint`` then
  ``nnUNetv2_plan_experiment`` (the default ``ExperimentPlanner``, 8 GB target);
- ``medseg plan --no-probe``: nnU-Net's rules with nnU-Net's 8 GB feature-map estimate — should
  equal nnU-Net's 3d_fullres;
- ``medseg plan --memory-gb 8``: the same rules with the memory measured on this CPU;
- ``medseg plan --time-budget B --folds 0``: what the accuracy study's ``medseg-plan`` row gets.

nnU-Net's values are mapped to the files' X, Y, Z axes (it reads NIfTI with SimpleITK as
Z, Y, X, then transposes the coarsest axis first); medseg's are in RAS after its ``reorient``,
the same axes here (the cases are rotated by ≤ 20°, so the nearest RAS axes are the voxel axes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import OUT, ROOT, load_average, machine, update_section, write_nnunet_dataset

DATASETS = {
    "phantom": (601, "PlanPhantom"),
    "phantom-thick": (602, "PlanPhantomThick"),
    "colin27": (603, "PlanColin27"),
    "colin27-thick": (604, "PlanColin27Thick"),
}
AXES = "XYZ"


def make_dataset(name: str, root: Path, n: int) -> Path:
    """The training cases of ``name`` in nnU-Net's raw layout (reused when present)."""
    from benchmarks.accuracy import TASKS, phantom_case
    from benchmarks.real_cases import write_case

    if (root / "dataset.json").exists():
        return root
    task = TASKS["phantom" if name.startswith("phantom") else "colin27"]
    ids = [f"{task.ids[0]}_{1000 + i}" for i in range(n)]
    if task.name == "phantom":
        slices = (5.0, 7.0) if name.endswith("thick") else (2.0, 3.0)
        cases = [(cid, *phantom_case(1000 + i, 0.5, slices)) for i, cid in enumerate(ids)]
    else:
        spacing = ((1.2, 1.2, 4.5), (2.2, 2.2, 6.0)) if name.endswith("thick") else None
        for i, cid in enumerate(ids):
            img, lab = root / "imagesTr" / f"{cid}_0000.nii.gz", root / "labelsTr" / f"{cid}.nii.gz"
            write_case(1000 + i, "left", img, lab, spacing)
        cases = [(cid, None, None) for cid in ids]
    return write_nnunet_dataset(root, cases, labels=task.labels, channel=task.channel)


# ---- nnU-Net ------------------------------------------------------------------------------------
def nnunet_plan(raw: Path, dataset_id: int, name: str, base: Path, log: Path) -> dict[str, Any]:
    """Fingerprint and plan with nnU-Net v2 in its venv; its configurations mapped to X, Y, Z."""
    from benchmarks import nnunet

    nnunet.ensure_venv(log.parent / "nnunet_install.log")
    target = base / "raw" / f"Dataset{dataset_id}_{name}"
    if not target.exists():
        shutil.copytree(raw, target)
    t0 = time.perf_counter()
    folder = base / "preprocessed" / f"Dataset{dataset_id}_{name}"
    if not (folder / "nnUNetPlans.json").exists():
        nnunet.run([str(nnunet.venv_bin("nnUNetv2_extract_fingerprint")), "-d", str(dataset_id), "-np", "2"], base, log)
        nnunet.run([str(nnunet.venv_bin("nnUNetv2_plan_experiment")), "-d", str(dataset_id)], base, log)
    seconds = time.perf_counter() - t0
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    fingerprint = json.loads((folder / "dataset_fingerprint.json").read_text())
    tf = plans["transpose_forward"]
    out: dict[str, Any] = {"seconds": seconds}
    for conf_name, key in (("3d_fullres", "3d"), ("2d", "2d")):
        c = plans["configurations"].get(conf_name)
        if c is None:
            continue
        arch = c["architecture"]["arch_kwargs"]
        axes = [2 - tf[a] for a in range(3)][-len(c["patch_size"]) :]  # nnU-Net axis → voxel axis X, Y, Z
        strides = [[s[i] for i in range(len(axes))] for s in arch["strides"]]
        out[key] = {
            "axes": axes,
            "spacing": c["spacing"],
            "patch": c["patch_size"],
            "pools": [sum(1 for s in strides if s[i] == 2) for i in range(len(axes))],
            "features": arch["features_per_stage"],
            "batch": c["batch_size"],
            "normalisation": _nnunet_norm(c, fingerprint),
        }
    return out


def _nnunet_norm(conf: dict[str, Any], fingerprint: dict[str, Any]) -> str:
    scheme = conf["normalization_schemes"][0]
    if scheme == "CTNormalization":
        p = fingerprint["foreground_intensity_properties_per_channel"]["0"]
        return (
            f"CT: clip {p['percentile_00_5']:.0f}..{p['percentile_99_5']:.0f}, z-score {p['mean']:.1f} ± {p['std']:.1f}"
        )
    return f"z-score{' in the nonzero mask' if conf['use_mask_for_norm'][0] else ''}"


# ---- medseg -------------------------------------------------------------------------------------
def medseg_plan(raw: Path, out: Path, args: list[str], log: Path) -> dict[str, Any]:
    """``medseg plan raw -o out ARGS`` in its own process; its configurations in X, Y, Z."""
    cmd = [sys.executable, "-m", "medseg.cli", "plan", str(raw), "-o", str(out), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_env())
    seconds = time.perf_counter() - t0
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}\n")
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1], "seconds": seconds}
    record = json.loads((out / "plan.json").read_text())
    pipeline = yaml.safe_load((out / "pipeline.yaml").read_text())
    res: dict[str, Any] = {"seconds": seconds, "chosen": record["chosen"], "probes": len(record["probes"])}
    for key, c in record["configurations"].items():
        axes = ["RAS".index(a) for a in c["axcodes"]][: len(c["patch"])]
        res[key] = {
            "axes": axes,
            "spacing": c["spacing"][: len(c["patch"])],
            "patch": c["patch"],
            "pools": [sum(1 for s in c["strides"] if s[i] == 2) for i in range(len(c["patch"]))],
            "features": c["features"],
            "batch": c["batch"],
            "schedule": f"{c['max_epochs']} × {c['iterations_per_epoch']}",
            "notes": c["notes"],
        }
    res["normalisation"] = _medseg_norm(pipeline)
    return res


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _medseg_norm(pipeline: dict[str, Any]) -> str:
    for step in pipeline["preprocess"]:
        ((name, opts),) = step.items()
        if name == "percentile_clip":
            return f"CT: clip {opts['low']:.0f}..{opts['high']:.0f}, z-score {opts['mean']:.1f} ± {opts['std']:.1f}"
        if name == "zscore":
            return f"z-score{' in the nonzero mask' if opts.get('over') == 'nonzero' else ''}"
    return "none"


# ---- report -------------------------------------------------------------------------------------
def _per_axis(values: list[Any], axes: list[int], fmt: str = "{}") -> str:
    by_axis = dict(zip(axes, values))
    return " ".join(f"{AXES[a]} {fmt.format(by_axis[a])}" for a in sorted(by_axis))


def _row(planner: str, conf: dict[str, Any] | None, norm: str, extra: str = "") -> str:
    if conf is None:
        return f"| {planner} | - | - | - | - | - | {norm} | {extra} |"
    axes = conf["axes"]
    slices = "" if len(axes) == 3 else f" (slices along {AXES[({0, 1, 2} - set(axes)).pop()]})"
    return (
        f"| {planner} | {_per_axis(conf['spacing'], axes, '{:.2f}')} | {_per_axis(conf['patch'], axes)}{slices} | "
        f"{_per_axis(conf['pools'], axes)} | {conf['features'][0]}..{max(conf['features'])} ({len(conf['features'])} stages) | "
        f"{conf['batch']} | {norm} | {extra} |"
    )


def table(name: str, nn: dict[str, Any], runs: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        f"**{name}**",
        "",
        "| planner | target spacing (mm) | patch | poolings per axis | features | batch | normalisation | notes |",
        "|---|---|---|---|---|---:|---|---|",
    ]
    for key in ("3d", "2d"):
        lines.append(_row(f"nnU-Net {key}", nn.get(key), nn.get(key, {}).get("normalisation", "-")))
    for label, r in runs.items():
        if "error" in r:
            lines.append(f"| {label} | error: {r['error']} |  |  |  |  |  |  |")
            continue
        for key in ("3d", "2d"):
            if key in r:
                chosen = " (chosen)" if r["chosen"] == key else ""
                note = f"{r[key]['schedule']} iterations; {r['probes']} probes; " + "; ".join(r[key]["notes"])
                lines.append(_row(f"{label} {key}{chosen}", r[key], r["normalisation"], note))
    return [*lines, ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"comma list of {', '.join(DATASETS)}")
    ap.add_argument("--n-train", type=int, default=8, help="training cases per dataset (the accuracy study: 8)")
    ap.add_argument("--budget-s", type=float, default=600.0, help="--time-budget of the budgeted medseg plan")
    ap.add_argument("--out", type=Path, default=OUT / "plan_vs_nnunet")
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    args = ap.parse_args()
    names = [n for n in args.datasets.split(",") if n]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        raise SystemExit(f"--datasets: unknown {unknown}; choose from {', '.join(DATASETS)}")
    out = args.out.resolve()
    logs = out / "logs"
    command = "python benchmarks/plan_vs_nnunet.py " + " ".join(sys.argv[1:])
    results: dict[str, Any] = {"machine": machine(), "load_before": load_average(), "datasets": {}}
    t0 = time.perf_counter()
    text: list[str] = []
    for name in names:
        dataset_id, nn_name = DATASETS[name]
        raw = make_dataset(name, out / "data" / name, args.n_train)
        print(f"[{time.perf_counter() - t0:6.0f} s] {name}: nnU-Net ...", file=sys.stderr, flush=True)
        nn = nnunet_plan(raw, dataset_id, nn_name, out / "nnunet", logs / f"nnunet_{name}.log")
        runs = {}
        for label, extra in (
            ("medseg --no-probe", ["--no-probe"]),
            ("medseg --memory-gb 8 (measured)", ["--device", "cpu", "--memory-gb", "8"]),
            (
                f"medseg --time-budget {args.budget_s:g}",
                ["--device", "cpu", "--time-budget", f"{args.budget_s:g}", "--folds", "0"],
            ),
        ):
            print(f"[{time.perf_counter() - t0:6.0f} s] {name}: {label} ...", file=sys.stderr, flush=True)
            folder = out / "medseg" / name / label.split()[1].lstrip("-")
            runs[label] = medseg_plan(raw, folder, extra, logs / f"medseg_{name}.log")
        results["datasets"][name] = {"nnunet": nn, "medseg": runs}
        text += table(f"{name} ({args.n_train} cases)", nn, runs)
    results["load_after"] = load_average()
    mach = results["machine"]
    header = [
        f"Command: `{command.strip()}` — commit {mach['commit']}, {mach['date']}, run took "
        f"{time.perf_counter() - t0:.0f} s (planning, not a timing: the probes measure the machine under "
        f"the load of the moment, load average "
        f"before/after {results['load_before']} / {results['load_after']}).",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, torch {mach['torch']}; nnU-Net v2 2.8.1 in its own venv.",
        "",
    ]
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    report = "\n".join(header + text)
    print(report)
    update_section(args.results, "plan-vs-nnunet", report)


if __name__ == "__main__":
    main()
