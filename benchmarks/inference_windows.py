"""Inference windows larger than the training patch: Dice to the reference, agreement, time (demo model).

The demo pipeline (trained on 48³ patches at 3 mm) predicts the held-out Colin27 T1 with inference
windows of 48³ (its training patch), 64³ and 96³, with and without 8-fold mirroring, no
post-processing, float32 on the CPU::

    python benchmarks/inference_windows.py

Prints one line per set-up: seconds (second of two runs), Dice to the brain mask, Dice to the 48³ result.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", default="48,64,96", help="window edges to try (default 48,64,96)")
    args = parser.parse_args()
    import medseg
    from medseg.pipeline import Pipeline

    conf = yaml.safe_load((ROOT / "pipelines" / "brain_mask_mr.yaml").read_text())
    conf["inference"]["checkpoints"] = [str(ROOT / "sample_data" / "checkpoints" / "brain_mask_mr.pt")]
    conf["inference"]["precision"] = "float32"
    conf["postprocess"] = []
    image = medseg.read(ROOT / "sample_data" / "colin27" / "ch2.nii.gz")
    reference = np.asarray(medseg.read(ROOT / "sample_data" / "colin27" / "ch2bet.nii.gz").array[0]) > 0
    first: dict[bool, np.ndarray] = {}
    for edge in (int(v) for v in args.windows.split(",")):
        for mirror in (False, True):
            c = copy.deepcopy(conf)
            c["inference"]["patch_size"] = [edge] * 3
            c["inference"]["mirror_axes"] = [0, 1, 2] if mirror else []
            pipeline = Pipeline.from_dict(c)
            pipeline.predict(image)  # warm-up
            t0 = time.perf_counter()
            mask = np.asarray(pipeline.predict(image).array[0]) > 0
            seconds = time.perf_counter() - t0
            base = first.setdefault(mirror, mask)
            print(
                f"window {edge}³, {'8-fold mirroring' if mirror else 'no mirroring'}: {seconds:.2f} s, "
                f"Dice to reference {dice(mask, reference):.4f}, to the {args.windows.split(',')[0]}³ result "
                f"{dice(mask, base):.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
