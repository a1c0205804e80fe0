"""Single stages alone on the same CT, medseg against MONAI (and scipy for connected components).

Called by ``benchmarks/run.py`` in its own process::

    python benchmarks/stages.py --image ct.nii.gz --repeat 3

1. pre-processing of the loaded image: reorient RAS → resample 1.5 mm (linear) → HU window
   (medseg steps vs MONAI ``Orientation`` + ``Spacing`` + ``ScaleIntensityRange``);
2. post-processing of the reference label map: keep the largest component per label, then
   fill holes (medseg steps vs MONAI ``KeepLargestConnectedComponent`` + ``FillHoles``);
3. connected components alone: keep the largest component per label, 26-connectivity
   (medseg/cc3d vs MONAI vs ``scipy.ndimage.label``).

Each time is the best of ``--repeat`` runs (s). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import HU_WINDOW, LABELS, TARGET_SPACING, child_result


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Smallest wall time of ``repeat`` calls (s) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def scipy_keep_largest(labels: np.ndarray) -> np.ndarray:
    """Largest 26-connected component per label with ``scipy.ndimage.label``."""
    from scipy import ndimage

    out = np.zeros_like(labels)
    structure = np.ones((3, 3, 3), dtype=bool)
    for value in np.unique(labels):
        if value == 0:
            continue
        comp, n = ndimage.label(labels == value, structure=structure)
        if n == 0:
            continue
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        out[comp == int(np.argmax(sizes))] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, required=True)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from monai.data import MetaTensor
    from monai.transforms import (
        Compose,
        FillHoles,
        KeepLargestConnectedComponent,
        Orientation,
        ScaleIntensityRange,
        Spacing,
    )

    import medseg.postprocess
    import medseg.transforms
    from medseg.core import build_step
    from medseg.io import read

    volume = read(args.image)
    volume = volume.replace(array=volume.numpy().astype(np.float32))
    label = read(args.image.with_name(args.image.name.replace(".nii.gz", "_label.nii.gz")))
    # Noisy prediction-like labels: the reference plus scattered false-positive voxels.
    rng = np.random.default_rng(0)
    noisy = label.numpy().copy()
    spots = rng.random(noisy.shape) < 0.002
    noisy[spots] = rng.integers(1, len(LABELS), int(spots.sum()), dtype=noisy.dtype)
    noisy_volume = label.replace(array=noisy, kind="label")

    steps = [
        build_step("reorient", axcodes="RAS"),
        build_step("resample", spacing=(TARGET_SPACING,) * 3, mode="linear"),
        build_step("clip", low=HU_WINDOW[0], high=HU_WINDOW[1]),
        build_step("scale_intensity", low=HU_WINDOW[0], high=HU_WINDOW[1]),
    ]

    def medseg_pre() -> Any:
        v = volume
        for step in steps:
            v = step(v)
        return v

    monai_pre_t = Compose(
        [
            Orientation(axcodes="RAS"),
            Spacing(pixdim=(TARGET_SPACING,) * 3, mode="bilinear"),
            ScaleIntensityRange(a_min=HU_WINDOW[0], a_max=HU_WINDOW[1], b_min=0.0, b_max=1.0, clip=True),
        ]
    )
    image_mt = MetaTensor(torch.from_numpy(volume.numpy()), affine=torch.from_numpy(volume.affine))
    post_steps = [
        build_step("keep_largest_component", per_label=True, connectivity=26),
        build_step("fill_holes", mode="3d"),
    ]

    def medseg_post() -> Any:
        v = noisy_volume
        for step in post_steps:
            v = step(v)
        return v

    applied = list(range(1, len(LABELS)))
    monai_klcc = KeepLargestConnectedComponent(applied_labels=applied, independent=True, connectivity=3)
    monai_post_t = Compose([monai_klcc, FillHoles(applied_labels=applied, connectivity=1)])
    label_t = torch.from_numpy(noisy.astype(np.int64))
    keep = medseg.postprocess.keep_largest_component

    r = args.repeat
    result: dict[str, Any] = {"shape": list(volume.spatial_shape)}
    result["pre_medseg_s"], pre_m = best_of(r, medseg_pre)
    result["pre_monai_s"], pre_o = best_of(r, lambda: monai_pre_t(image_mt))
    result["pre_grid_medseg"], result["pre_grid_monai"] = list(pre_m.spatial_shape), list(pre_o.shape[1:])
    result["post_medseg_s"], post_m = best_of(r, medseg_post)
    result["post_monai_s"], post_o = best_of(r, lambda: monai_post_t(label_t.clone()))
    result["post_same"] = bool(np.array_equal(post_m.numpy(), post_o.numpy().astype(post_m.numpy().dtype)))
    result["cc_medseg_s"], cc_m = best_of(r, lambda: keep(noisy[0], per_label=True, connectivity=26))
    result["cc_monai_s"], cc_o = best_of(r, lambda: monai_klcc(label_t.clone()))
    result["cc_scipy_s"], cc_s = best_of(r, lambda: scipy_keep_largest(noisy[0]))
    result["cc_same_monai"] = bool(np.array_equal(cc_m, cc_o.numpy()[0]))
    result["cc_same_scipy"] = bool(np.array_equal(cc_m, cc_s))
    child_result(result)


if __name__ == "__main__":
    main()
