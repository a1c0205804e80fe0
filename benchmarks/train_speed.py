"""Training iterations per second, medseg ``Trainer`` or the plain MONAI loop, in this process.

Called by ``benchmarks/run.py`` once per contender::

    python benchmarks/train_speed.py --method medseg --data DatasetDIR --patch 96 --iterations 20

Same network (MONAI ``UNet`` channels (8, 16, 32, 64), strides (2, 2, 2)), same
pre-processing (RAS, 1.5 mm, HU window), batch 2, Dice + CE, SGD. medseg runs its default
augmentation (flips, rotation, scaling, noise, blur, brightness, contrast, low
resolution, gamma, batched on the device); MONAI its tutorial set (flips, 90° rotations,
intensity scale/shift). The rate is taken after the first epoch/two iterations
(warm-up). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    HU_WINDOW,
    TARGET_SPACING,
    UNET_CHANNELS,
    UNET_STRIDES,
    child_result,
    make_unet,
)


def medseg_preprocess():
    """The pipeline's pre-processing as one callable (reorient, resample, HU window)."""
    import medseg.transforms  # noqa: F401  (register the steps)
    from medseg.core import build_step

    steps = [
        build_step("reorient", axcodes="RAS"),
        build_step("resample", spacing=(TARGET_SPACING,) * 3, mode="linear"),
        build_step("clip", low=HU_WINDOW[0], high=HU_WINDOW[1]),
        build_step("scale_intensity", low=HU_WINDOW[0], high=HU_WINDOW[1]),
    ]

    def apply(volume):
        for step in steps:
            volume = step(volume)
        return volume

    return apply


def run_medseg(data: Path, patch: int, iterations: int, work: Path) -> dict:
    from medseg.training import Trainer, load_dataset

    trainer = Trainer(
        "monai.unet",
        {"channels": list(UNET_CHANNELS), "strides": list(UNET_STRIDES), "num_res_units": 1},
        out_dir=work,
        preprocess=medseg_preprocess(),
        patch_size=(patch,) * 3,
        batch_size=2,
        max_epochs=2,
        iterations_per_epoch=iterations,
        device="cpu",
        progress=False,
    )
    t0 = time.perf_counter()
    result = trainer.fit(load_dataset(data), fold=None, resume=False)
    total = time.perf_counter() - t0
    with result.log_csv.open() as f:
        rows = list(csv.DictReader(f))
    last = float(rows[-1]["time_s"])
    return {"it_per_s": iterations / last, "iterations": 2 * iterations, "total_s": total}


def run_monai(data: Path, patch: int, iterations: int) -> dict:
    from benchmarks.monai_recipe import train

    cases = [(p, data / "labelsTr" / p.name.replace("_0000", "")) for p in sorted((data / "imagesTr").glob("*.nii.gz"))]
    t0 = time.perf_counter()
    stats = train(make_unet(), cases, patch_size=(patch,) * 3, iterations=iterations + 2)
    return {"it_per_s": stats["it_per_s"], "iterations": stats["iterations"], "total_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=["medseg", "monai"], required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--work", type=Path, default=Path("benchmarks/out/train_speed"))
    args = ap.parse_args()
    if args.method == "medseg":
        result = run_medseg(args.data, args.patch, args.iterations, args.work)
    else:
        result = run_monai(args.data, args.patch, args.iterations)
    result["torch_threads"] = torch.get_num_threads()
    child_result(result)


if __name__ == "__main__":
    main()
