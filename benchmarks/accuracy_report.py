"""The accuracy benchmark's Markdown: each method's Dice per label, mean ± standard deviation over its seeds.

Kept apart from ``benchmarks/accuracy.py`` (which trains and predicts) so the table can be
re-rendered from ``accuracy.json`` and tested without training anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def runs_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A method's runs (one per seed); results written before seeds existed are one run, seed 0."""
    if "runs" in result:
        return list(result["runs"])
    return [{"seed": 0, "train": result["train"], "metrics": result["metrics"]}]


def mean_sd(values: list[float], digits: int = 3) -> str:
    """``"0.712 ± 0.041"`` over runs (sample standard deviation); one run: the value alone; NaN: ``"nan"``."""
    v = np.asarray(values, dtype=float)
    if v.size == 0 or not np.isfinite(v).all():
        return "nan" if v.size == 0 or not np.isfinite(v).any() else mean_sd(list(v[np.isfinite(v)]), digits) + "*"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _iterations(runs: list[dict[str, Any]]) -> str:
    done = [r["train"].get("iterations") for r in runs]
    if any(d is None for d in done):
        return "-"
    text = mean_sd([float(d) for d in done], 0)
    planned = [r["train"].get("planned_iterations") for r in runs]
    if all(p is not None for p in planned):  # medseg-plan: what the plan promised, and the delivered share
        share = [d / p for d, p in zip(done, planned) if p]
        text += f" (planned {mean_sd([float(p) for p in planned], 0)}; delivered {mean_sd(share, 2)}×)"
    return text


def method_rows(labels: list[str], methods: dict[str, Any]) -> list[str]:
    """Table rows: method, seeds, training seconds, iterations, Dice per label and their mean."""
    rows = []
    for name, result in methods.items():
        runs = runs_of(result)
        cells = [mean_sd([r["metrics"][label]["dice"] for r in runs]) for label in labels]
        seeds = ",".join(str(r["seed"]) for r in runs)
        rows.append(
            f"| {name} | {seeds} | {mean_sd([r['train']['train_s'] for r in runs], 0)} | {_iterations(runs)} | "
            + " | ".join(cells)
            + f" | {mean_sd([r['metrics']['mean']['dice'] for r in runs])} |"
        )
    return rows


def report(task: Any, res: dict[str, Any], command: str) -> str:
    """The whole RESULTS.md block for one run of the benchmark."""
    mach = res["machine"]
    labels = [task.labels[k] for k in task.foreground]
    lines = [
        f"Command: `{command}` — commit {mach['commit']}, {mach['date']}, run took {res['wall_s']:.0f} s.",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, torch {mach['torch']}, MONAI {mach['monai']}; load average "
        f"before/after {res['load_before']} / {res['load_after']}.",
        f"Data: {res['n_train']} training and {res['n_test']} held-out cases, {task.data}; training budget "
        f"{res['budget_s']:.0f} s per method and seed on the CPU, patch {res['patch']}³. Dice per label: mean over "
        "the held-out cases, then mean ± standard deviation over the seeds (one seed: its value).",
        "",
        "| method | seeds | train [s] | iterations | "
        + " | ".join(f"{label} Dice" for label in labels)
        + " | mean Dice |",
        "|---|---|---:|---:|" + "---:|" * (len(labels) + 1),
        *method_rows(labels, res["methods"]),
    ]
    for name, result in res["methods"].items():
        chose = {r["train"].get("plan") for r in runs_of(result)} - {None}
        for plan in sorted(chose):
            lines += ["", f"{name} chose: {plan}."]
    lines += _agreement_lines(res.get("agreement"))
    earlier = {name: r.get("command") for name, r in res["methods"].items() if r.get("command") != command}
    if earlier:
        runs = "; ".join(f"`{cmd}`" for cmd in res.get("previous_runs", []))
        lines += ["", "Rows not re-run by this command (same data, same budget):"]
        lines += [f"- {name}: `{cmd}`" if cmd else f"- {name}: one of {runs}" for name, cmd in earlier.items()]
    for name, err in res.get("failed", {}).items():
        lines += ["", f"{name}: did not complete — {err}"]
    return "\n".join(lines)


def _agreement_lines(agree: dict[str, Any] | None) -> list[str]:
    if not agree:
        return []
    lines = ["", "medseg vs MONAI inference, same medseg-trained weights, mean Dice per label over the test cases:"]
    for variant, what in (
        ("first_voxel", "medseg on its `first_voxel` grid"),
        ("monai_grid", "medseg `resample_to` MONAI's grid"),
    ):
        if variant in agree:
            dices = ", ".join(f"{k} {v:.4f}" for k, v in agree[variant].items())
            diff = agree.get("differing_voxels", {}).get(variant)
            counts = f"; differing voxels per case {diff} of {agree.get('voxels')} foreground" if diff else ""
            lines.append(f"- {what}: {dices}{counts}.")
    return lines
