"""Pre-processing speed: medseg vs MONAI on a CT (load + reorient + resample + intensity window).

A seeded CT phantom (default 512×512×200 int16, 0.8×0.8×2.5 mm) is written to a temporary
NIfTI; each contender runs in its own subprocess (so peak RSS is its own) and times
``load → RAS → 1.5 mm isotropic (linear) → window [-1000, 1000] HU → [0, 1]``:

* medseg: ``medseg.io.read`` → ``Reorient`` → ``Resample`` → ``ScaleIntensity``
* MONAI: ``LoadImaged`` → ``Orientationd`` → ``Spacingd`` → ``ScaleIntensityRanged``

The two libraries place the 1.5 mm grid differently (medseg keeps the image's outer
extent, MONAI its first voxel centre), so the outputs are compared on MONAI's grid:
an untimed third run resamples our reoriented image onto it with ``ResampleTo``.

Usage::

    python benchmarks/bench_preprocess.py [--size 512,512,200] [--device cpu|cuda] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import peak_rss_mib

WINDOW = (-1000.0, 1000.0)


def _triple(text: str, kind: type) -> tuple:
    vals = [kind(v) for v in text.replace("x", ",").split(",")]
    if len(vals) != 3:
        raise SystemExit(f"expected 3 comma-separated values, got {text!r}")
    return tuple(vals)


def _rss_mb() -> float:
    """Current resident memory of this process, MiB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _worker_medseg(args: argparse.Namespace) -> dict:
    import torch

    import medseg.io
    from medseg.transforms import Reorient, Resample, ScaleIntensity

    read = medseg.io.read

    steps = [Reorient("RAS"), Resample(spacing=args.target), ScaleIntensity(low=WINDOW[0], high=WINDOW[1])]
    base = _rss_mb()
    times, cpu, stages = [], [], []
    out = None
    for _ in range(args.repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        vol = read(args.path)
        if args.device != "cpu":
            vol = vol.to(args.device)
        marks = [time.perf_counter()]
        for step in steps:
            vol = step(vol)
            _sync(args.device)
            marks.append(time.perf_counter())
        out = vol.numpy()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        stages.append([marks[0] - t0] + [b - a for a, b in itertools.pairwise(marks)])
    assert out is not None
    result = {
        "times": times,
        "cpu": cpu,
        "stages": dict(zip(["read", "reorient", "resample", "scale"], np.median(stages, axis=0).tolist())),
        "shape": list(out.shape),
        "base_rss_mb": base,
    }
    if args.device.startswith("cuda"):
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _worker_monai(args: argparse.Namespace) -> dict:
    import torch
    from monai.transforms import Compose, EnsureTyped, LoadImaged, Orientationd, ScaleIntensityRanged, Spacingd

    chain = [LoadImaged("image", ensure_channel_first=True, image_only=True)]
    if args.device != "cpu":
        chain.append(EnsureTyped("image", device=torch.device(args.device), track_meta=True))
    chain += [
        Orientationd("image", axcodes="RAS"),
        Spacingd("image", pixdim=args.target, mode="bilinear"),
        ScaleIntensityRanged("image", a_min=WINDOW[0], a_max=WINDOW[1], b_min=0.0, b_max=1.0, clip=True),
    ]
    pipeline = Compose(chain)
    base = _rss_mb()
    times, cpu = [], []
    out = None
    for _ in range(args.repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = pipeline({"image": args.path})["image"]
        _sync(args.device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert out is not None
    np.save(args.save, out.detach().cpu().numpy().astype(np.float32))
    Path(args.save).with_suffix(".json").write_text(
        json.dumps({"shape": list(out.shape[1:]), "affine": out.affine.cpu().numpy().tolist()})
    )
    result = {"times": times, "cpu": cpu, "shape": list(out.shape), "base_rss_mb": base}
    if args.device.startswith("cuda"):
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _worker_check(args: argparse.Namespace) -> dict:
    """Our steps, with the resampling placed on MONAI's grid (untimed), for the output comparison."""
    import medseg.io
    from medseg.core import Grid
    from medseg.transforms import Reorient, ResampleTo, ScaleIntensity

    ref = json.loads(Path(args.reference).with_suffix(".json").read_text())
    grid = Grid(tuple(ref["shape"]), np.array(ref["affine"]))
    vol = medseg.io.read(args.path).to(args.device)
    for step in (Reorient("RAS"), ResampleTo(grid, fill=None), ScaleIntensity(low=WINDOW[0], high=WINDOW[1])):
        vol = step(vol)
    theirs = np.load(args.reference)
    ours = vol.numpy()
    value_range = float(theirs.max() - theirs.min())
    return {"max_abs_diff": float(np.abs(ours - theirs).max()), "value_range": value_range}


WORKERS = {
    "medseg": _worker_medseg,
    "monai": _worker_monai,
    "check": _worker_check,
}


def _run_worker(name: str, args: argparse.Namespace, path: Path, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--path",
        str(path),
        "--repeats",
        str(args.repeats),
        "--device",
        args.device,
        "--target",
        str(args.target),
        *(["--threads", str(args.threads)] if args.threads else []),
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{name} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="512,512,200", help="X,Y,Z voxels of the CT phantom")
    parser.add_argument("--spacing", default="0.8,0.8,2.5", help="input voxel size in mm")
    parser.add_argument("--target", type=float, default=1.5, help="output isotropic spacing in mm")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--gzip", action="store_true", help="write .nii.gz (adds decompression to both)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        import warnings

        warnings.filterwarnings("ignore")
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        result = WORKERS[args.worker](args)
        result["peak_rss_mb"] = peak_rss_mib()
        print(json.dumps(result))
        return

    import nibabel as nib

    from medseg.data import ct_phantom

    size = _triple(args.size, int)
    spacing = _triple(args.spacing, float)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        image, _ = ct_phantom(size, spacing, seed=0)
        path = Path(tmp) / ("ct.nii.gz" if args.gzip else "ct.nii")
        nib.save(nib.Nifti1Image(image.numpy()[0], image.affine), str(path))
        del image
        print(
            f"input: {size} int16, {spacing} mm → {args.target} mm, {path.name}, made in {time.perf_counter() - t0:.1f} s"
        )
        save = str(Path(tmp) / "monai.npy")
        results = {
            "monai": _run_worker("monai", args, path, ["--save", save]),
            "medseg": _run_worker("medseg", args, path, []),
        }
        check = _run_worker("check", args, path, ["--reference", save])

    print(f"\ndevice {args.device}, {args.repeats} repeats, torch threads {args.threads or 'default'}")
    print(
        f"{'contender':<18} {'median s':>9} {'min s':>8} {'CPU s':>8} {'peak RSS MB':>12} {'after import MB':>16}"
        "  output shape"
    )
    for name, r in results.items():
        print(
            f"{name:<18} {statistics.median(r['times']):>9.3f} {min(r['times']):>8.3f} "
            f"{statistics.median(r['cpu']):>8.3f} {r['peak_rss_mb']:>12.0f} "
            f"{r['base_rss_mb']:>16.0f}  {tuple(r['shape'])}"
            + (f"  GPU peak {r['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in r else "")
        )
    print()
    for name in ("medseg",):
        r = results[name]
        speedup = statistics.median(results["monai"]["times"]) / statistics.median(r["times"])
        cpu_ratio = statistics.median(results["monai"]["cpu"]) / statistics.median(r["cpu"])
        stages = ", ".join(f"{k} {v:.3f}" for k, v in r["stages"].items())
        print(f"{name}: stages (median s) {stages}")
        print(f"{name}: speed-up over MONAI (load + preprocess) {speedup:.1f}× wall time, {cpu_ratio:.1f}× CPU time")
    rel = check["max_abs_diff"] / max(check["value_range"], 1e-12)
    print(
        f"same output on MONAI's grid: max |medseg - MONAI| = {check['max_abs_diff']:.2e} "
        f"({rel:.2e} of the value range {check['value_range']:.3g}) — {'OK' if rel <= 1e-3 else 'DIFFERENT'}"
    )


if __name__ == "__main__":
    main()
