"""Cases per hour of a batch run: in-process vs overlapped I/O vs Dask LocalCluster.

Writes ``--cases`` synthetic CT phantoms (``medseg.data.ct_phantom``) as NIfTI, then runs the
same realistic processor over them with each executor:
read → resample to 2 mm (torch trilinear) → clip/normalise HU → a small 3D conv net on the CPU →
logits resampled back to the input grid → argmax → write the label map (NIfTI, atomic).

Usage::

    python benchmarks/bench_batch.py --cases 8 --shape 256 256 160 --workers 2

Prints a table and a JSON line with cases/hour and the speed-up over in-process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import medseg
from medseg.batch import Case, discover_cases, output_path, read_provenance, run_batch
from medseg.data import ct_phantom


def small_net(seed: int = 0, width: int = 16, classes: int = 5) -> torch.nn.Module:
    """A small 3D conv net (3 convolutions, ``width`` filters) with fixed random weights."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, width, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv3d(width, width, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv3d(width, classes, 1),
    ).eval()


@dataclass
class CTProcessor:
    """The benchmark's processor: a realistic CPU segmentation of one CT."""

    spacing_mm: float = 2.0
    threads: int = 2

    def __post_init__(self) -> None:
        self.net = small_net()

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"{self.spacing_mm}|{medseg.__version__}".encode())
        for t in self.net.state_dict().values():
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, object]:
        return {"pipeline": "bench_ct", "spacing_mm": self.spacing_mm, "device": "cpu"}

    def load(self, case: Case) -> tuple[medseg.Volume, torch.Tensor]:
        volume = medseg.read(case.images[0])
        x = torch.from_numpy(volume.numpy().astype(np.float32))[None]  # (1, 1, X, Y, Z)
        size = [max(1, round(n * s / self.spacing_mm)) for n, s in zip(volume.spatial_shape, volume.spacing)]
        x = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
        x = (x.clamp(-200.0, 300.0) - 50.0) / 120.0
        return volume, x

    def run(self, loaded: tuple[medseg.Volume, torch.Tensor]) -> medseg.Volume:
        torch.set_num_threads(self.threads)
        volume, x = loaded
        with torch.inference_mode():
            logits = self.net(x)
            logits = F.interpolate(logits, size=list(volume.spatial_shape), mode="trilinear", align_corners=False)
            label = logits.argmax(1).to(torch.uint8).numpy()
        return volume.replace(array=label, kind="label")

    def save(self, case: Case, result: medseg.Volume, out_dir: Path) -> dict[str, Path]:
        return {"label": medseg.write(result, output_path(out_dir, f"{case.case_id}.nii.gz"))}


def make_cases(folder: Path, n: int, shape: tuple[int, int, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, _ = ct_phantom(shape, (0.8, 0.8, 1.5), seed=i)
        medseg.write(image, folder / f"ct_{i:03d}.nii.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 160))
    parser.add_argument("--workers", type=int, default=2, help="Dask workers (one torch thread each)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads in-process")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temp folder)")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="medseg-bench-batch-"))
    src = work / "in"
    t0 = time.perf_counter()
    make_cases(src, args.cases, tuple(args.shape))
    print(f"wrote {args.cases} cases of {tuple(args.shape)} in {time.perf_counter() - t0:.1f} s to {src}")
    cases = discover_cases(src)
    warm = CTProcessor(threads=args.threads)
    warm.run(warm.load(cases[0]))  # first-call costs (allocator, kernels) are not part of any executor's time
    runs = [
        ("inprocess", {"executor": "inprocess"}, CTProcessor(threads=args.threads)),
        ("overlap", {"executor": "overlap", "prefetch": 2}, CTProcessor(threads=args.threads)),
        ("dask", {"executor": "dask", "workers": args.workers}, CTProcessor(threads=1)),
    ]
    results: dict[str, dict[str, float]] = {}
    reference: dict[str, np.ndarray] | None = None
    for name, options, processor in runs:
        out = work / f"out_{name}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        report = run_batch(cases, processor, out, progress=False, **options)  # type: ignore[arg-type]
        seconds = time.perf_counter() - t
        if report.succeeded != len(cases):
            raise SystemExit(f"{name}: {report.summary()}")
        labels = {c.case_id: medseg.read(out / f"{c.case_id}.nii.gz").numpy() for c in cases}
        reference = reference or labels
        agreement = float(np.mean([np.mean(labels[k] == reference[k]) for k in labels]))
        stages: dict[str, float] = {}
        for c in cases:
            for stage, t in read_provenance(out, c.case_id)["timings_s"].items():  # type: ignore[index]
                stages[stage] = stages.get(stage, 0.0) + t / len(cases)
        results[name] = {
            "seconds": seconds,
            "cases_per_hour": 3600 * len(cases) / seconds,
            "voxel_agreement": agreement,
            **{f"mean_{k}_s": v for k, v in stages.items()},
        }
    base = results["inprocess"]["cases_per_hour"]
    print(
        f"{'executor':<10} {'seconds':>8} {'cases/h':>9} {'speed-up':>9} {'agree':>7}  mean stage s (hash/load/run/save)"
    )
    for name, r in results.items():
        r["speedup"] = r["cases_per_hour"] / base
        st = "/".join(f"{r.get(f'mean_{k}_s', 0.0):.2f}" for k in ("hash", "load", "run", "save"))
        print(
            f"{name:<10} {r['seconds']:8.1f} {r['cases_per_hour']:9.0f} {r['speedup']:8.2f}x "
            f"{r['voxel_agreement']:7.4f}  {st}"
        )
    print(json.dumps({"cases": args.cases, "shape": list(args.shape), "cpus": os.cpu_count(), "results": results}))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
