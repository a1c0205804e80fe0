"""Post-processing benchmark: medseg (cc3d/scipy, foreground box) against MONAI, one table.

On a synthetic CT label map of ``--size`` voxels (default 512×512×200, 4 organs plus
scattered false-positive specks) it times keep-largest-component per label,
remove-small-components, 3D hole filling and label statistics, and checks that
keep-largest gives the same voxels as MONAI's ``KeepLargestConnectedComponent``.

Run: ``python benchmarks/bench_postprocess.py --size 256,256,100``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch


def scene(size: tuple[int, int, int]) -> np.ndarray:
    from medseg.data import ct_phantom

    _, label = ct_phantom(size, (0.8, 0.8, 2.5), seed=0)
    arr = label.numpy()[0].astype(np.uint8)
    rng = np.random.default_rng(0)
    specks = rng.random(arr.shape) < 2e-4
    arr[specks] = rng.integers(1, int(arr.max()) + 1, size=int(specks.sum())).astype(np.uint8)
    return arr


def timed(fn: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    from monai.transforms import FillHoles, KeepLargestConnectedComponent, RemoveSmallObjects

    from medseg.core import Volume, make_affine
    from medseg.postprocess import fill_holes, keep_largest_component, label_statistics, remove_small_components

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="512,512,200")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # MONAI's RemoveSmallObjects → scikit-image
    size = tuple(int(v) for v in args.size.split(","))
    labels = scene(size)
    k = int(labels.max())
    t_labels = torch.from_numpy(labels[None])
    rows = []

    t_ours, ours = timed(lambda: keep_largest_component(labels), args.repeat)
    klcc = KeepLargestConnectedComponent(applied_labels=list(range(1, k + 1)), independent=True, connectivity=3)
    t_monai, ref = timed(lambda: klcc(t_labels), args.repeat)
    same = np.array_equal(ours, np.asarray(ref)[0])
    rows.append(("keep largest component per label", t_ours, t_monai, f"identical: {same}"))

    t_ours, _ = timed(lambda: remove_small_components(labels, min_size_voxels=64), args.repeat)
    rso = RemoveSmallObjects(min_size=64, connectivity=3, independent_channels=False)
    t_monai, _ = timed(lambda: rso(t_labels), args.repeat)
    rows.append(("remove small components (64 voxels)", t_ours, t_monai, ""))

    t_ours, _ = timed(lambda: fill_holes(labels), args.repeat)
    fh = FillHoles(applied_labels=list(range(1, k + 1)))
    t_monai, _ = timed(lambda: fh(t_labels), args.repeat)
    rows.append(("fill holes 3D per label", t_ours, t_monai, ""))

    vol = Volume(labels[None], make_affine((0.8, 0.8, 2.5)), kind="label")
    t_ours, _ = timed(lambda: label_statistics(vol), args.repeat)
    rows.append(("label statistics (voxels, mL, bbox, centroid)", t_ours, float("nan"), ""))

    print(f"label map {size}, {k} labels, best of {args.repeat}, torch threads {torch.get_num_threads()}")
    print(f"{'operation':48s} {'medseg [s]':>11s} {'MONAI [s]':>10s} {'speed-up':>9s}")
    for name, a, b, note in rows:
        sp = f"{b / a:8.1f}×" if np.isfinite(b) else f"{'—':>9s}"
        mb = f"{b:10.3f}" if np.isfinite(b) else f"{'—':>10s}"
        print(f"{name:48s} {a:11.3f} {mb} {sp}  {note}")


if __name__ == "__main__":
    main()
