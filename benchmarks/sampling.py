"""Which labels the trainer's patches show: foreground drawn by voxels vs nnU-Net's class first.

On the accuracy benchmark's CT phantoms (liver, spleen, left kidney and a lesion ≈ 10 voxels across at the
planned spacing), this plans the training set as ``medseg plan --time-budget`` does, pre-processes it as the
trainer does, and draws the same number of batches with the planned patch and batch through the trainer's
:class:`medseg.training.loader.PatchStream`, once with the foreground centre drawn in proportion to each
label's voxels and once with the class drawn first, uniformly among the classes a case has (nnU-Net v2's
``nnUNetDataLoaderBase.get_bbox``, the planned default). Per label it reports the share of batches that show
at least one of its voxels (what a training step can learn from), and the label's share of the foreground
voxels seen against its share in the data.

    python benchmarks/sampling.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import TASKS, make_data
from common import OUT, load_average, machine, update_section


def draw(cases: list, patch: list[int], batch: int, ratio: float, balanced: bool, n: int, n_labels: int) -> dict:
    """``n`` batches from the trainer's stream; per label value: batches showing it, voxels seen."""
    from medseg.training.loader import PatchStream

    stream = PatchStream(cases, tuple(patch), batch, foreground_ratio=ratio, class_balanced=balanced, seed=0)
    rng = np.random.default_rng(1)
    shown = np.zeros(n_labels + 1, np.int64)
    voxels = np.zeros(n_labels + 1, np.int64)
    for _ in range(n):
        _, label = stream.batch(rng)
        counts = np.bincount(label.numpy().ravel(), minlength=n_labels + 1)[: n_labels + 1]
        shown += counts > 0
        voxels += counts
    return {"shown": shown, "voxels": voxels}


def data_shares(cases: list, n_labels: int) -> np.ndarray:
    """Each label's share of the foreground voxels of the pre-processed training set."""
    total = np.zeros(n_labels + 1, np.int64)
    for case in cases:
        label = np.load(case.folder / "label.npy", mmap_mode="r")
        total += np.bincount(np.asarray(label).ravel(), minlength=n_labels + 1)[: n_labels + 1]
    return total[1:] / total[1:].sum()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=8)
    ap.add_argument("--budget-s", type=float, default=600.0, help="the plan's --time-budget (s)")
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--no-probe", action="store_true", help="plan without probing (nnU-Net's full-size patch)")
    ap.add_argument("--out", type=Path, default=OUT / "sampling")
    ap.add_argument("--results", type=Path, default=None, help="write the table into this RESULTS.md")
    args = ap.parse_args()
    from medseg.pipeline import Pipeline
    from medseg.planning.planner import PlanOptions
    from medseg.planning.workflow import plan_dataset
    from medseg.training import load_dataset
    from medseg.training.cache import prepare_dataset

    t0 = time.perf_counter()
    command = ("python benchmarks/sampling.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])).strip()
    load_before = load_average()
    task = TASKS["phantom"]
    train, _ = make_data(args.out / "data", task, args.n_train, 0, 1.0)
    options = PlanOptions(device="cpu", time_budget_s=args.budget_s, n_folds=0)
    files = plan_dataset(train, args.out / "plan", options, probe=not args.no_probe)
    pipeline = Pipeline.from_yaml(files.pipeline)
    s = pipeline.training_config
    cases = prepare_dataset(load_dataset(train), pipeline.apply_preprocess, args.out / "cache")
    names = [task.labels[k] for k in sorted(task.labels) if k]
    k = len(names)
    shares = data_shares(cases, k)
    runs = {
        balanced: draw(cases, list(s.patch_size), s.batch_size, s.foreground_ratio, balanced, args.batches, k)
        for balanced in (False, True)
    }
    lines = [
        f"`{command}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()['cpu']}; "
        f"run took {time.perf_counter() - t0:.0f} s; load average before/after: {load_before} / {load_average()}.",
        "",
        f"{args.n_train} training phantoms planned with --time-budget {args.budget_s:g} s: patch {s.patch_size}, "
        f"batch {s.batch_size}, foreground ratio {s.foreground_ratio}; {args.batches} batches drawn each way.",
        "",
        "| label | share of foreground voxels in the data | batches showing it: by voxels | "
        "class first (nnU-Net, planned) | share of foreground voxels seen: by voxels | class first |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for i, name in enumerate(names, start=1):
        seen = [runs[b]["voxels"][i] / runs[b]["voxels"][1:].sum() for b in (False, True)]
        shown = [runs[b]["shown"][i] / args.batches for b in (False, True)]
        lines.append(
            f"| {name} | {100 * shares[i - 1]:.2f} % | {100 * shown[0]:.1f} % | {100 * shown[1]:.1f} % | "
            f"{100 * seen[0]:.2f} % | {100 * seen[1]:.2f} % |"
        )
    text = "\n".join(lines)
    print(text)
    if args.results:
        update_section(args.results, "sampling", text)


if __name__ == "__main__":
    main()
