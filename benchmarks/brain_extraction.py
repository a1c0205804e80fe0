"""deepbet brain extraction: medseg's two-stage pipeline vs deepbet's own ``run_bet``/CLI, same inputs.

Cases: Colin27's T1 (``sample_data/colin27/ch2.nii.gz``, reference ``ch2bet > 0``) and the demo's
held-out copy of it (LPS, 1.3 × 1.1 × 1.6 mm, altered contrast and noise; reference: the mask
re-gridded the same way). For each: Dice of medseg's mask vs deepbet's, and of both vs the
reference. With timing (the default), the wall time of each tool's command line on the same
file (``medseg predict pipelines/brain_extraction.yaml`` and ``python -m deepbet.ui.cli``, best
of ``--repeats``, Python start-up and model loading included) and of the warm in-process call
(models loaded once: ``Predictor.predict`` vs ``BrainExtraction.run``).

    python benchmarks/brain_extraction.py                       # Dice + timings, printed
    python benchmarks/brain_extraction.py --results benchmarks/RESULTS.md
    python benchmarks/brain_extraction.py --no-timing --results benchmarks/RESULTS.md   # Dice only

Needs ``pip install 'medseg[deepbet]'``. Both tools run on the CPU (``--device cpu``,
deepbet ``--no_gpu``) unless ``--device cuda``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import OUT, ROOT, dice, fmt, load_average, machine, update_section

PIPELINE = ROOT / "pipelines" / "brain_extraction.yaml"
COLIN = ROOT / "sample_data" / "colin27"


def cases(out: Path) -> dict[str, tuple[Path, Path]]:
    """``{case: (image, reference mask)}``: Colin27 as shipped, and the demo's re-gridded LPS copy."""
    import medseg
    from medseg.core import Volume
    from medseg.demo import heldout_copy

    t1 = medseg.read(COLIN / "ch2.nii.gz")
    bet = medseg.read(COLIN / "ch2bet.nii.gz")
    mask = Volume((bet.numpy() > 0).astype(np.uint8), bet.affine, kind="label")
    ref = medseg.write(mask, out / "reference" / "colin27.nii.gz")
    image, reference = heldout_copy(t1, mask)
    lps = medseg.write(image, out / "inputs" / "colin27_lps.nii.gz")
    lps_ref = medseg.write(reference, out / "reference" / "colin27_lps.nii.gz")
    return {"colin27": (COLIN / "ch2.nii.gz", ref), "colin27_lps": (lps, lps_ref)}


def medseg_cli(image: Path, out: Path, device: str) -> tuple[float, Path]:
    """Wall time of ``medseg predict`` on one file (fresh process) and the mask it wrote."""
    cmd = [sys.executable, "-m", "medseg.cli", "predict", str(PIPELINE), "-i", str(image), "-o", str(out)]
    cmd += ["--device", device, "--force", "--quiet", "--export", "nifti"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    return seconds, out / f"{image.name.split('.')[0]}.nii.gz"


def deepbet_cli(image: Path, out: Path, device: str) -> tuple[float, Path]:
    """Wall time of deepbet's command line on one file (fresh process) and the mask it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    mask, brain = out / f"{image.name.split('.')[0]}_mask.nii.gz", out / f"{image.name.split('.')[0]}_brain.nii.gz"
    cmd = [sys.executable, "-m", "deepbet.ui.cli", "-i", str(image), "-o", str(brain), "-m", str(mask)]
    cmd += ["--no_gpu"] if device == "cpu" else []
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0, mask


def warm_times(image: Path, out: Path, device: str, repeats: int) -> tuple[float, float]:
    """Best in-process times with the models already loaded: medseg's Predictor vs deepbet's BrainExtraction."""
    from deepbet import BrainExtraction

    from medseg.pipeline import Pipeline

    predictor = Pipeline.from_yaml(PIPELINE).predictor(device=device)
    bet = BrainExtraction(no_gpu=device == "cpu")
    ours, theirs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predictor.predict(image)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bet.run(str(image), mask_path=str(out / "warm_mask.nii.gz"))
        theirs.append(time.perf_counter() - t0)
    return min(ours), min(theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT / "brain_extraction")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per tool (best is reported).")
    parser.add_argument("--no-timing", dest="timing", action="store_false", help="Dice only (one run per tool).")
    parser.add_argument("--results", type=Path, default=None, help="Write the tables into this RESULTS.md block.")
    args = parser.parse_args()
    import medseg

    load_before = load_average()
    rows, timing_rows = [], []
    for case, (image, reference) in cases(args.out).items():
        runs = args.repeats if args.timing else 1
        ours = [medseg_cli(image, args.out / "medseg", args.device) for _ in range(runs)]
        theirs = [deepbet_cli(image, args.out / "deepbet", args.device) for _ in range(runs)]
        ref = medseg.read(reference).numpy()[0]
        a, b = medseg.read(ours[-1][1]).numpy()[0], medseg.read(theirs[-1][1]).numpy()[0]
        if a.shape != ref.shape or b.shape != ref.shape:
            raise SystemExit(f"{case}: mask shapes {a.shape} / {b.shape} differ from the reference {ref.shape}")
        rows.append(f"| {case} | {ref.shape} | {dice(a, b, 1):.4f} | {dice(a, ref, 1):.4f} | {dice(b, ref, 1):.4f} |")
        if args.timing:
            warm = warm_times(image, args.out, args.device, args.repeats)
            cli = min(t for t, _ in ours), min(t for t, _ in theirs)
            timing_rows.append(
                f"| {case} | {fmt(cli[0])} | {fmt(cli[1])} | {fmt(cli[0] / cli[1])} | {fmt(warm[0])} | "
                f"{fmt(warm[1])} | {fmt(warm[0] / warm[1])} |"
            )
    info = machine()
    lines = [
        "### deepbet brain extraction: medseg's two-stage pipeline vs deepbet's run_bet (`benchmarks/brain_extraction.py`)",
        "",
        "| case | grid | Dice medseg vs deepbet | Dice medseg vs reference | Dice deepbet vs reference |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "Reference: Colin27's BET mask (`ch2bet > 0`), re-gridded with the image for the LPS copy.",
    ]
    if not timing_rows:
        lines += [
            "",
            "Timings not measured in this run (`--no-timing`); `python benchmarks/brain_extraction.py --results "
            "benchmarks/RESULTS.md` measures them (medseg's two-stage pipeline vs deepbet's CLI, same file).",
        ]
    if timing_rows:
        lines += [
            "",
            f"Wall time on {args.device}, best of {args.repeats} [s]: command line (fresh process, models loaded) and "
            "warm (in process, models loaded once).",
            "",
            "| case | medseg CLI | deepbet CLI | ratio | medseg warm | deepbet warm | ratio |",
            "|---|---|---|---|---|---|---|",
            *timing_rows,
        ]
    lines += [
        "",
        f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, medseg {medseg.__version__} "
        f"(commit {info['commit']}), {info['date']}; load average {load_before} before, {load_average()} after.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.results is not None:
        update_section(args.results, "brain_extraction", text)


if __name__ == "__main__":
    main()
