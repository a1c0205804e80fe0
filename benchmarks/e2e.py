"""End-to-end inference of one CT file to a saved label map, medseg or MONAI, in this process.

Called by ``benchmarks/run.py`` once per contender (each in its own process, so the peak
memory is that contender's alone)::

    python benchmarks/e2e.py --method medseg --image ct.nii.gz --weights unet.pt --out pred.nii.gz

Both pipelines do the same job with the same network weights: read → reorient to RAS →
resample to 1.5 mm (linear) → HU window −160..240 → [0, 1] → sliding window (overlap 0.5,
Gaussian blending) → softmax → back onto the input grid (linear on probabilities) →
argmax → keep the largest component per label (26-connectivity) → write NIfTI.
Prints one JSON line: stage times (s), window count, peak RSS (and GPU) memory.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    LABELS,
    TARGET_SPACING,
    Timer,
    child_result,
    load_unet,
    medseg_intensity_steps,
)


def window_count(shape: tuple[int, ...], patch: tuple[int, ...], overlap: float = 0.5) -> int:
    """Sliding windows over ``shape`` (padded up to the patch where smaller)."""
    from medseg.inference import window_starts

    padded = [max(s, p) for s, p in zip(shape, patch)]
    return len(window_starts(padded, patch, overlap))


def nnunet_like(features: list[int], n_classes: int = len(LABELS)) -> torch.nn.Module:
    """medseg's own U-Net with nnU-Net's stage widths (e.g. 32, 64, 128, 256), seeded random weights."""
    from medseg.networks import build_network

    torch.manual_seed(0)
    return build_network(
        "unet",
        in_channels=1,
        out_channels=n_classes,
        spatial_dims=3,
        n_stages=len(features),
        base_channels=features[0],
        max_channels=features[-1],
    ).eval()


def matmul_gflops(n: int = 2048, repeat: int = 10) -> dict:
    """This CPU's matrix-multiply speed (GFLOP/s) in float32 and bfloat16, best of ``repeat`` (the roofline
    the network stage is compared with). bfloat16 only where the CPU computes it natively (else None: an
    emulated bfloat16 matmul of this size takes minutes and medseg does not use it there)."""
    from medseg.core.precision import cpu_bf16_flags

    out: dict[str, float | None] = {"bfloat16": None}
    dtypes = [("float32", torch.float32)] + ([("bfloat16", torch.bfloat16)] if cpu_bf16_flags() else [])
    for name, dtype in dtypes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)
        best = min(_timed(lambda a=a, b=b: torch.mm(a, b)) for _ in range(repeat))
        out[name] = 2 * n**3 / best / 1e9
    return out


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def network_gflop(net: torch.nn.Module, patch: tuple[int, ...]) -> float:
    """Multiply-adds ×2 of the convolutions for one window (GFLOP), counted on the ``meta`` device."""
    import copy

    ghost = copy.deepcopy(net).to("meta")
    flops = []

    def count(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, torch.nn.Conv3d):
            k = int(torch.tensor(module.kernel_size).prod())
            flops.append(2 * module.in_channels // module.groups * k * output.numel())
        elif isinstance(module, torch.nn.ConvTranspose3d):
            k = int(torch.tensor(module.kernel_size).prod())
            flops.append(2 * module.out_channels // module.groups * k * inputs[0].numel())

    hooks = [
        m.register_forward_hook(count)
        for m in ghost.modules()
        if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))
    ]
    with torch.no_grad():
        ghost(torch.empty(1, 1, *patch, device="meta"))
    for h in hooks:
        h.remove()
    return sum(flops) / 1e9


def run_medseg(
    image: Path,
    weights: Path,
    out: Path,
    patch: tuple[int, ...],
    device: str,
    mirror: bool,
    features: list[int] | None = None,
    grid: str = "extent",
    precision: str = "auto",
) -> dict:
    """medseg: :class:`medseg.inference.Predictor` with the pipeline's steps; stages timed around its methods.

    ``features``: use medseg's U-Net with these stage widths instead of the shared weights.
    ``grid``: the resample grid convention (``"first_voxel"`` is MONAI ``Spacing``'s).
    ``precision``: the Predictor's (``auto``: bfloat16 where the CPU has it natively).
    """
    import medseg.postprocess
    import medseg.transforms  # noqa: F401  (register the steps)
    from medseg.core import build_step
    from medseg.inference import Predictor
    from medseg.io import read, write

    net = nnunet_like(features) if features else load_unet(weights)
    timer = Timer(device)
    predictor = Predictor(
        net,
        preprocess=[
            build_step("reorient", axcodes="RAS"),
            build_step("resample", spacing=(TARGET_SPACING,) * 3, mode="linear", grid=grid),
            *medseg_intensity_steps("ct"),
        ],
        patch_size=patch,
        overlap=0.5,
        blend="gaussian",
        batch_size=4,
        mirror_axes=(0, 1, 2) if mirror else (),
        device=device,
        precision=precision,
        postprocess=[build_step("keep_largest_component", per_label=True, connectivity=26)],
    )
    grid: list[int] = []

    def timed(name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            with timer(name):
                result = fn(*a, **k)
            if name == "preprocess":
                grid.extend(result.spatial_shape)
            return result

        return wrapper

    predictor.run_preprocess = timed("preprocess", predictor.run_preprocess)  # type: ignore[method-assign]
    predictor.probabilities = timed("network", predictor.probabilities)  # type: ignore[method-assign]
    t0 = time.perf_counter()
    with timer("load"):
        volume = read(image)
    labels = predictor.predict(volume)
    write(labels, out)
    total = time.perf_counter() - t0
    s = timer.seconds
    return {
        "load_preprocess_s": s["load"] + s["preprocess"],
        "network_s": s["network"],
        "post_s": total - s["load"] - s["preprocess"] - s["network"],
        "total_s": total,
        "grid": grid,
        "windows": window_count(tuple(grid), patch) * (8 if mirror else 1),
        "precision": predictor.precision.name,
        "gflop_per_window": network_gflop(net, patch),
    }


def run_monai(
    image: Path,
    net: torch.nn.Module,
    out: Path,
    patch: tuple[int, ...],
    device: str,
    n_classes: int = len(LABELS),
    *,
    spacing: float = TARGET_SPACING,
    intensity: str = "ct",
    keep_largest: list[int] | None = None,
) -> dict:
    """MONAI: the dictionary-transform pipeline of its tutorials, ``Invertd`` back to the input grid.

    ``keep_largest``: labels reduced to their largest component (default: every label).
    """
    from monai.inferers import sliding_window_inference
    from monai.transforms import (
        Activationsd,
        AsDiscreted,
        Compose,
        Invertd,
        KeepLargestConnectedComponentd,
        SaveImaged,
    )

    from benchmarks.monai_recipe import preprocess_transforms

    net = net.eval().to(device)
    timer = Timer(device)
    save_dir = out.parent / f"{out.name.split('.')[0]}_monai_save"
    pre = Compose(preprocess_transforms(("image",), spacing, intensity))
    post = Compose(
        [
            Activationsd("pred", softmax=True),
            Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False, to_tensor=True),
            AsDiscreted("pred", argmax=True),
            KeepLargestConnectedComponentd(
                "pred",
                applied_labels=list(range(1, n_classes)) if keep_largest is None else keep_largest,
                independent=True,
                connectivity=3,
            ),
            SaveImaged(
                "pred",
                output_dir=str(save_dir),
                output_postfix="seg",
                separate_folder=False,
                output_dtype="uint8",
                resample=False,
                print_log=False,
            ),
        ]
    )
    t0 = time.perf_counter()
    with timer("load_preprocess"):
        data = pre({"image": str(image)})
    grid = list(data["image"].shape[1:])
    affine = np.asarray(data["image"].affine, dtype=np.float64).tolist()
    with timer("network"), torch.no_grad():
        data["pred"] = sliding_window_inference(
            data["image"][None].to(device), patch, 4, net, overlap=0.5, mode="gaussian", sigma_scale=0.125
        )[0].cpu()
    with timer("post"):
        data = post(data)
    total = time.perf_counter() - t0
    written = sorted(save_dir.glob("*.nii.gz"))
    if len(written) != 1:
        raise SystemExit(f"MONAI SaveImaged: expected one file in {save_dir}, found {written}")
    written[0].replace(out)
    save_dir.rmdir()
    s = timer.seconds
    return {
        "load_preprocess_s": s["load_preprocess"],
        "network_s": s["network"],
        "post_s": s["post"],
        "total_s": total,
        "grid": grid,
        "affine": affine,
        "windows": window_count(tuple(grid), patch),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=["medseg", "monai"])
    ap.add_argument("--image", type=Path)
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--matmul", action="store_true", help="only measure this CPU's float32/bfloat16 matmul GFLOP/s")
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--mirror", action="store_true", help="medseg only: test-time mirroring on 3 axes")
    ap.add_argument("--features", help="medseg only: its U-Net with these stage widths, e.g. 32,64,128,256")
    ap.add_argument(
        "--grid", choices=["extent", "first_voxel"], default="extent", help="medseg only: resample grid convention"
    )
    ap.add_argument("--precision", default="auto", help="medseg only: auto, float32, bfloat16")
    ap.add_argument(
        "--profile", type=Path, help="write the top cProfile entries (own and cumulative time) to this file"
    )
    args = ap.parse_args()
    if args.matmul:
        child_result(matmul_gflops())
        return
    if not (args.method and args.image and args.weights and args.out):
        ap.error("--method, --image, --weights and --out are required")
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    patch = (args.patch,) * 3
    if args.method == "medseg":
        features = [int(f) for f in args.features.split(",")] if args.features else None
        result = run_medseg(
            args.image, args.weights, args.out, patch, args.device, args.mirror, features, args.grid, args.precision
        )
    elif args.mirror:
        raise SystemExit("MONAI's sliding_window_inference has no mirroring; run without --mirror")
    else:
        result = run_monai(args.image, load_unet(args.weights), args.out, patch, args.device)
    result["torch_threads"] = torch.get_num_threads()
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(15)
        stats.sort_stats("cumulative").print_stats("medseg|monai", 25)
        args.profile.write_text(text.getvalue())
    child_result(result, args.device)


if __name__ == "__main__":
    main()
