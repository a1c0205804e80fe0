"""medseg against MONAI (and nnU-Net v2) on the same machine and input, in one command.

    python benchmarks/run.py                       # 512×512×200 CT, patch 96³ (≈ 20 min on 2 cores)
    python benchmarks/run.py --size 64,64,32 --quick --results /tmp/R.md
    python benchmarks/run.py --nnunet              # also nnU-Net v2 (installs it in its own venv; slow)

Sections (``--sections``, comma separated; default all but ``nnunet``, which ``--nnunet`` adds):

- ``e2e``: one seeded CT phantom (``--size`` at 0.8×0.8×2.5 mm, HU) file → label map file on
  the input grid, same U-Net weights, medseg ``Predictor`` vs the MONAI dictionary pipeline;
  stages load+preprocess / network / invert+postprocess+save, peak RSS, label agreement.
- ``stages``: pre-processing, post-processing and connected components alone (vs MONAI, scipy).
- ``train``: training iterations per second, medseg ``Trainer`` vs the plain MONAI loop.
- ``batch``: cases per hour of ``medseg.batch.run_batch`` (``benchmarks/bench_batch.py``).
- ``nnunet``: ``nnUNetv2_predict`` on the same CT (model trained briefly on phantoms), with and
  without mirroring, next to medseg with the same number of windows.

Each contender runs in its own process; the table goes to stdout, the raw numbers to
``OUT/results.json`` and a section of ``--results`` (default ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
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
    CT_SPACING,
    LABELS,
    OUT,
    QUICK_RECIPE,
    TRAINING_RECIPE,
    dice,
    fmt,
    load_average,
    machine,
    make_unet,
    parse_size,
    ratio,
    run_child,
    run_e2e,
    trained_unet,
    update_section,
    write_ct_case,
    write_nnunet_dataset,
)

HERE = Path(__file__).resolve().parent
SECTIONS = ("e2e", "stages", "train", "batch", "nnunet")


def section_e2e(args: argparse.Namespace, image: Path, weights: Path, logs: Path) -> dict[str, Any]:
    """medseg and MONAI end to end, each in its own process, on the .nii.gz case and an uncompressed copy;
    label agreement of medseg's default precision with medseg float32 and with MONAI afterwards."""
    import shutil

    from medseg.io import read

    plain = image.with_name(image.name.replace(".nii.gz", ".nii"))
    if not plain.exists():
        import gzip

        with gzip.open(image, "rb") as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst)
    runs = {  # name: (method, input, extra options)
        "medseg": ("medseg", image, []),
        "monai": ("monai", image, []),
        "medseg_nii": ("medseg", plain, []),
        "monai_nii": ("monai", plain, []),
        "medseg_float32": ("medseg", image, ["--precision", "float32"]),
        # medseg on MONAI Spacing's grid, for the same-weights agreement with MONAI
        "medseg_first_voxel": ("medseg", image, ["--grid", "first_voxel"]),
    }
    res: dict[str, Any] = {}
    for name, (method, source, extra) in runs.items():
        out = args.out / f"pred_{name}.nii.gz"
        res[name] = run_e2e(
            method, source, weights, out, args.patch, logs / f"e2e_{name}.log", [*extra, "--device", args.device]
        )
        res[name]["output"] = str(out)
    src = read(image)
    m, o = read(res["medseg"]["output"]), read(res["monai"]["output"])
    res["same_grid"] = {
        "medseg": bool(m.grid.matches(src.grid, atol=1e-4)),
        "monai": bool(o.grid.matches(src.grid, atol=1e-4)),
    }
    mm, oo = m.numpy()[0], o.numpy()[0]
    f32 = read(res["medseg_float32"]["output"]).numpy()[0]
    ff = read(res["medseg_first_voxel"]["output"]).numpy()[0]
    ref = read(image.with_name(image.name.replace(".nii.gz", "_label.nii.gz"))).numpy()[0]
    res["agreement_dice"] = {LABELS[k]: dice(mm, oo, k) for k in LABELS if k and mm.shape == oo.shape}
    res["agreement_dice_float32"] = {LABELS[k]: dice(mm, f32, k) for k in LABELS if k}
    res["agreement_dice_first_voxel"] = {LABELS[k]: dice(ff, oo, k) for k in LABELS if k and ff.shape == oo.shape}
    res["dice_vs_truth"] = {
        "medseg": {LABELS[k]: dice(mm, ref, k) for k in LABELS if k},
        "monai": {LABELS[k]: dice(oo, ref, k) for k in LABELS if k},
    }
    res["machine_gflops"] = run_child(HERE / "e2e.py", ["--matmul"], log=logs / "matmul.log")
    return res


def section_stages(args: argparse.Namespace, image: Path, logs: Path) -> dict[str, Any]:
    """Pre-processing, post-processing and connected components alone (one child process)."""
    return run_child(
        HERE / "stages.py", ["--image", str(image), "--repeat", "1" if args.quick else "3"], log=logs / "stages.log"
    )


def section_train(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Training iterations per second on a small phantom dataset, medseg vs MONAI."""
    from medseg.data import ct_phantom

    patch = 32 if args.quick else args.patch
    shape = (64, 64, 48) if args.quick else (160, 160, 96)
    root = args.out / "train_data"
    if not (root / "dataset.json").exists():
        cases = [(f"ph_{i:03d}", *ct_phantom(shape, (1.2, 1.2, 2.0), seed=100 + i)) for i in range(4)]
        write_nnunet_dataset(root, cases)
    iterations = 3 if args.quick else 10
    res: dict[str, Any] = {"patch": patch, "case_shape": list(shape)}
    for method in ("medseg", "monai"):
        res[method] = run_child(
            HERE / "train_speed.py",
            [
                "--method",
                method,
                "--data",
                str(root),
                "--patch",
                str(patch),
                "--iterations",
                str(iterations),
                "--work",
                str(args.out / "train_speed"),
            ],
            log=logs / f"train_{method}.log",
        )
    return res


def section_batch(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Cases per hour of the batch engine (``bench_batch.py``: in-process, overlapped I/O, Dask)."""
    cases, shape = ("2", ["48", "48", "32"]) if args.quick else ("4", ["256", "256", "160"])
    return run_child(
        HERE / "bench_batch.py", ["--cases", cases, "--shape", *shape, "--workers", "2"], log=logs / "batch.log"
    )


def section_nnunet(args: argparse.Namespace, image: Path, weights: Path, logs: Path) -> dict[str, Any]:
    """nnU-Net v2 predict (with/without mirroring) and medseg with the same window count."""
    from benchmarks import nnunet

    return nnunet.benchmark(args, image, weights, logs)


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown tables of everything that ran."""
    lines: list[str] = []
    e = results.get("e2e")
    if e:
        m, o = e["medseg"], e["monai"]
        lines += [
            f"### End-to-end inference: {tuple(results['size'])} CT at {CT_SPACING} mm → labels on the input grid",
            "",
            f"Resampled grid medseg {tuple(m['grid'])}, MONAI {tuple(o['grid'])}; patch {args.patch}³, overlap 0.5, "
            f"Gaussian; windows medseg {m['windows']}, MONAI {o['windows']}; device {args.device}.",
            "",
            "| stage | medseg | MONAI | medseg/MONAI |",
            "|---|---:|---:|---:|",
        ]
        for key, name in (
            ("load_preprocess_s", "load + preprocess [s]"),
            ("network_s", "network (sliding window) [s]"),
            ("post_s", "invert + postprocess + save [s]"),
            ("total_s", "**total [s]**"),
            ("peak_rss_mib", "peak RSS [MiB]"),
            ("peak_gpu_mib", "peak GPU memory [MiB]"),
        ):
            if key in m or key in o:
                lines.append(f"| {name} | {fmt(m.get(key))} | {fmt(o.get(key))} | {ratio(m.get(key), o.get(key))} |")
        lines += [
            "",
            f"Input `.nii.gz` (above); uncompressed `.nii`: medseg {fmt(e['medseg_nii']['total_s'])} s, MONAI "
            f"{fmt(e['monai_nii']['total_s'])} s ({ratio(e['medseg_nii']['total_s'], e['monai_nii']['total_s'])}). "
            f"On the input grid: medseg {e['same_grid']['medseg']}, MONAI {e['same_grid']['monai']}. "
            f"medseg's network ran in {m.get('precision', 'float32')}, MONAI's in float32.",
            "",
            "Label agreement, Dice per organ (a network trained briefly on phantoms, `benchmarks/common.py:trained_unet`):",
            "",
            "| pair | " + " | ".join(e["agreement_dice"]) + " |",
            "|---|" + "---:|" * len(e["agreement_dice"]),
        ]
        pairs = [
            ("agreement_dice_float32", f"medseg {m.get('precision', '?')} vs medseg float32"),
            (
                "agreement_dice_first_voxel",
                f"medseg {m.get('precision', '?')} on MONAI's grid (`first_voxel`) vs MONAI float32",
            ),
            ("agreement_dice", f"medseg {m.get('precision', '?')} vs MONAI float32 (each on its own resampling grid)"),
        ]
        for key, name in pairs:
            if key in e:
                lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in e[key].values()) + " |")
        if "dice_vs_truth" in e:
            for who in ("medseg", "monai"):
                lines.append(
                    f"| {who} vs the phantom's true labels | "
                    + " | ".join(f"{v:.3f}" for v in e["dice_vs_truth"][who].values())
                    + " |"
                )
        if "machine_gflops" in e and m.get("gflop_per_window"):
            g = e["machine_gflops"]
            per_window = m["network_s"] / m["windows"]
            achieved = m["gflop_per_window"] / per_window
            lines += [
                "",
                f"Network stage: {m['windows']} windows, {per_window * 1000:.0f} ms per window, "
                f"{m['gflop_per_window']:.1f} GFLOP per window (convolutions) → {achieved:.0f} GFLOP/s; this CPU's "
                f"2048² matmul: {_gflops(g['bfloat16'])} bfloat16, {_gflops(g['float32'])} float32 "
                f"({achieved / (g['bfloat16' if m.get('precision') == 'bfloat16' else 'float32'] or float('nan')):.0%} of the "
                f"{m.get('precision', 'float32')} figure).",
            ]
        lines.append("")
    s = results.get("stages")
    if s:
        lines += [
            f"### Single stages on the {tuple(s['shape'])} CT (best of {1 if args.quick else 3})",
            "",
            "| stage | medseg [s] | MONAI [s] | scipy [s] | medseg/MONAI | same output |",
            "|---|---:|---:|---:|---:|---|",
            f"| preprocess (RAS, 1.5 mm, HU window) | {fmt(s['pre_medseg_s'], 3)} | {fmt(s['pre_monai_s'], 3)} | - | "
            f"{ratio(s['pre_medseg_s'], s['pre_monai_s'])} | grids {tuple(s['pre_grid_medseg'])} / {tuple(s['pre_grid_monai'])} |",
            f"| postprocess (largest CC per label + fill holes) | {fmt(s['post_medseg_s'], 3)} | {fmt(s['post_monai_s'], 3)} | - | "
            f"{ratio(s['post_medseg_s'], s['post_monai_s'])} | {s['post_same']} |",
            f"| connected components (largest per label, 26-conn.) | {fmt(s['cc_medseg_s'], 3)} | {fmt(s['cc_monai_s'], 3)} | "
            f"{fmt(s['cc_scipy_s'], 3)} | {ratio(s['cc_medseg_s'], s['cc_monai_s'])} | "
            f"MONAI {s['cc_same_monai']}, scipy {s['cc_same_scipy']} |",
            "",
        ]
    t = results.get("train")
    if t:
        m, o = t["medseg"], t["monai"]
        lines += [
            f"### Training speed: patch {t['patch']}³, batch 2, same U-Net, CPU",
            "",
            "| | medseg Trainer | MONAI loop | medseg/MONAI |",
            "|---|---:|---:|---:|",
            f"| iterations/s | {fmt(m['it_per_s'], 3)} | {fmt(o['it_per_s'], 3)} | {ratio(m['it_per_s'], o['it_per_s'])} |",
            f"| peak RSS [MiB] | {fmt(m['peak_rss_mib'], 0)} | {fmt(o['peak_rss_mib'], 0)} | {ratio(m['peak_rss_mib'], o['peak_rss_mib'])} |",
            "",
        ]
    b = results.get("batch")
    if b:
        lines += [
            f"### Batch throughput: {b['cases']} cases of {tuple(b['shape'])} (bench_batch.py)",
            "",
            "| executor | seconds | cases/hour | speed-up | agreement with in-process |",
            "|---|---:|---:|---:|---|",
        ]
        for name, r in b["results"].items():
            lines.append(
                f"| {name} | {r['seconds']:.1f} | {r['cases_per_hour']:.0f} | {r['speedup']:.2f} | {r.get('voxel_agreement', r.get('identical', '-'))} |"
            )
        lines.append("")
    n = results.get("nnunet")
    if n:
        from benchmarks import nnunet

        lines += nnunet.table(n)
    return "\n".join(lines)


def _gflops(value: float | None) -> str:
    return "not native here" if value is None else f"{value:.0f} GFLOP/s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="512,512,200", help="CT size X,Y,Z at 0.8×0.8×2.5 mm")
    ap.add_argument("--patch", type=int, default=96, help="sliding-window/training patch edge (voxels)")
    ap.add_argument("--quick", action="store_true", help="patch 32, few iterations, 1 repeat (smoke test)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--sections", default=",".join(SECTIONS[:-1]), help=f"comma list of {SECTIONS}")
    ap.add_argument("--nnunet", action="store_true", help="add the nnU-Net v2 section (slow; installs nnU-Net)")
    ap.add_argument("--nnunet-mirror", action="store_true", help="nnU-Net also with test-time mirroring (8× slower)")
    ap.add_argument("--out", type=Path, default=OUT, help="work folder (inputs, predictions, logs)")
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS.md", help="Markdown file to update")
    ap.add_argument("--report-only", action="store_true", help="re-write the tables from OUT/results.json, no runs")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if args.nnunet and "nnunet" not in sections:
        sections.append("nnunet")
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"--sections: unknown {unknown}; choose from {list(SECTIONS)}")
    if args.quick:
        args.patch = min(args.patch, 32)
    size = parse_size(args.size)
    args.out = args.out.resolve()
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    if args.report_only:
        results = json.loads((args.out / "results.json").read_text())
        args.patch, args.quick, args.device = results["patch"], results["quick"], results["device"]
        report(results, results["sections"], results["command"], args)
        return
    t0 = time.perf_counter()
    image = write_ct_case(args.out / f"ct_{size[0]}x{size[1]}x{size[2]}.nii.gz", size)
    # trained briefly on phantoms (cached): label agreement between contenders means something
    recipe = QUICK_RECIPE if args.quick else TRAINING_RECIPE
    weights = trained_unet(args.out, recipe) if "e2e" in sections or "nnunet" in sections else args.out / "unet.pt"
    if not weights.exists():
        torch.save(make_unet().state_dict(), weights)
    results: dict[str, Any] = {"size": list(size), "machine": machine(), "load_before": load_average()}
    for name in sections:
        print(f"[{time.perf_counter() - t0:7.1f} s] {name} ...", file=sys.stderr, flush=True)
        if name == "e2e":
            results[name] = section_e2e(args, image, weights, logs)
        elif name == "stages":
            results[name] = section_stages(args, image, logs)
        elif name == "train":
            results[name] = section_train(args, logs)
        elif name == "batch":
            results[name] = section_batch(args, logs)
        else:
            results[name] = section_nnunet(args, image, weights, logs)
    results["load_after"] = load_average()
    results["wall_s"] = time.perf_counter() - t0
    results.update(sections=sections, patch=args.patch, quick=args.quick, device=args.device)
    results["command"] = "python benchmarks/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=_plain))
    report(results, sections, results["command"], args)


def report(results: dict[str, Any], sections: list[str], command: str, args: argparse.Namespace) -> None:
    """Print the tables and update the results file."""
    mach = results["machine"]
    header = [
        f"Command: `{command.strip()}` — commit {mach['commit']}, {mach['date']}, run took {results['wall_s']:.0f} s.",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory']}, GPU {mach['gpu']}, {mach['os']}; "
        f"Python {mach['python']}, torch {mach['torch']} ({mach['torch_threads']} threads), MONAI {mach['monai']}. "
        f"Load average before/after: {results['load_before']} / {results['load_after']}.",
        "",
    ]
    text = "\n".join(header) + table(results, args)
    print(text)
    # The full run owns the "run" block; a run of other sections (e.g. only nnunet) gets its own.
    update_section(args.results, "run" if "e2e" in sections else "run-" + "-".join(sections), text)
    print(f"\nwrote {args.results} and {args.out / 'results.json'}", file=sys.stderr)


def _plain(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


if __name__ == "__main__":
    main()
