"""Whole-case inference benchmark, medseg against MONAI, side by side in one run.

A synthetic CT of ``--size`` voxels at 0.8×0.8×2.5 mm (default 512×512×200) is resampled
to 1.5 mm (≈273×273×333) and segmented by the same small 3D U-Net (MONAI ``UNet``,
fixed seed) with overlap 0.5 and Gaussian blending. Stages timed:

1. sliding window (medseg vs ``monai.inferers.sliding_window_inference``), outputs compared;
2. softmax + invert onto the input grid + argmax + keep-largest-component + save
   (medseg ``invert_to_labels``/``keep_largest_component``/``write`` vs MONAI
   ``Activationsd`` + ``Invertd`` + ``AsDiscreted`` + ``KeepLargestConnectedComponentd`` + ``SaveImaged``);
3. peak resident memory of the whole case, each method in its own process.

Run: ``python benchmarks/bench_inference.py --size 256,256,100`` (smaller) or without
options for the full size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import medseg.transforms.resample  # noqa: F401  (registers the "resample" step)
from benchmarks.common import peak_rss_mib

SPACING = (0.8, 0.8, 2.5)
TARGET = 1.5


def network(n_classes: int) -> torch.nn.Module:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    return UNet(3, 1, n_classes, channels=(8, 16, 32, 64), strides=(2, 2, 2), num_res_units=1).eval()


def phantom(size: tuple[int, int, int]):
    from medseg.core import Volume, make_affine
    from medseg.data import ct_phantom

    img, _ = ct_phantom(size, SPACING, affine=make_affine(SPACING, (-200.0, -200.0, -100.0)), seed=0)
    return Volume(np.clip(img.numpy().astype(np.float32), -200, 300) / 100.0, img.affine)


def run_medseg(size, patch, k, out_dir: Path) -> dict:
    from medseg.core import Volume, build_step
    from medseg.inference import invert_to_labels, sliding_window_inference, softmax_
    from medseg.io import write
    from medseg.postprocess import keep_largest_component

    vol = phantom(size)
    net = network(k)
    t0 = time.perf_counter()
    pre = build_step("resample", spacing=(TARGET,) * 3)(vol)
    t1 = time.perf_counter()
    logits = sliding_window_inference(pre.tensor(dtype=torch.float32)[None], net, patch_size=patch, batch_size=4)[0]
    t2 = time.perf_counter()
    probs = Volume(softmax_(logits), pre.affine, kind="probability", history=pre.history)
    labels = invert_to_labels(probs).numpy()  # one class at a time on the input grid
    del probs, logits
    labels[0] = keep_largest_component(labels[0])
    write(Volume(labels, vol.affine, kind="label"), out_dir / "medseg.nii.gz")
    t3 = time.perf_counter()
    return {"preprocess_s": t1 - t0, "sliding_window_s": t2 - t1, "post_s": t3 - t2, "grid": list(pre.spatial_shape)}


def run_monai(size, patch, k, out_dir: Path) -> dict:
    from monai.data import MetaTensor
    from monai.inferers import sliding_window_inference
    from monai.transforms import (
        Activationsd,
        AsDiscreted,
        Invertd,
        KeepLargestConnectedComponentd,
        SaveImaged,
        Spacingd,
    )

    vol = phantom(size)
    net = network(k)
    data = {
        "image": MetaTensor(torch.from_numpy(np.ascontiguousarray(vol.numpy())), affine=torch.from_numpy(vol.affine))
    }
    t0 = time.perf_counter()
    pre = Spacingd("image", pixdim=(TARGET,) * 3, mode="bilinear")
    data = pre(data)
    t1 = time.perf_counter()
    with torch.no_grad():
        data["pred"] = sliding_window_inference(
            data["image"][None], patch, 4, net, overlap=0.5, mode="gaussian", sigma_scale=0.125
        )[0]
    t2 = time.perf_counter()
    for t in (
        Activationsd("pred", softmax=True),
        Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False),
        AsDiscreted("pred", argmax=True),
        KeepLargestConnectedComponentd("pred", applied_labels=list(range(1, k)), independent=True),
        SaveImaged("pred", output_dir=str(out_dir), output_postfix="monai", separate_folder=False, print_log=False),
    ):
        data = t(data)
    t3 = time.perf_counter()
    return {
        "preprocess_s": t1 - t0,
        "sliding_window_s": t2 - t1,
        "post_s": t3 - t2,
        "grid": list(data["image"].shape[1:]),
    }


def compare_sliding_window(size, patch, k) -> dict:
    """Both sliding windows on the same pre-processed tensor: time and max difference."""
    from monai.inferers import sliding_window_inference as monai_swi

    from medseg.core import build_step
    from medseg.core.memory import reuse_freed_memory
    from medseg.inference import sliding_window_inference

    x = build_step("resample", spacing=(TARGET,) * 3)(phantom(size)).tensor(dtype=torch.float32)[None]
    net = network(k)
    with torch.no_grad():
        net(x[..., : patch[0], : patch[1], : patch[2]])  # warm-up
    res: dict = {"shape": list(x.shape[2:])}

    def monai_run() -> torch.Tensor:
        return monai_swi(x, patch, 4, net, overlap=0.5, mode="gaussian", sigma_scale=0.125)

    def monai_reusing_memory() -> torch.Tensor:  # MONAI given medseg's allocator setting: isolates that gain
        with reuse_freed_memory():
            return monai_run()

    for _ in range(2):  # interleaved, best of two: the machine may be shared
        for name, run in (
            ("monai", monai_run),
            ("medseg", lambda: sliding_window_inference(x, net, patch_size=patch, batch_size=4)),
            ("monai_reuse", monai_reusing_memory),
        ):
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.no_grad():
                out = run()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            res[f"{name}_s"] = min(res.get(f"{name}_s", wall), wall)
            res[f"{name}_cpu_s"] = min(res.get(f"{name}_cpu_s", cpu), cpu)
            res[name] = out
    res.pop("monai_reuse")
    res["max_abs_diff"] = float((res.pop("medseg") - res.pop("monai")).abs().max())
    return res


def child(method: str, size, patch, k) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        res = (run_medseg if method == "medseg" else run_monai)(size, patch, k, Path(tmp))
    # VmHWM: ru_maxrss would include the parent's resident memory inherited at fork
    res["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="512,512,200", help="input CT size X,Y,Z at 0.8×0.8×2.5 mm")
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--child", choices=["medseg", "monai"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split(","))
    patch = (args.patch,) * 3
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, size, patch, args.classes)
        return
    sw = compare_sliding_window(size, patch, args.classes)
    cases = {}
    for method in ("medseg", "monai"):
        cmd = [
            sys.executable,
            __file__,
            "--size",
            args.size,
            "--patch",
            str(args.patch),
            "--classes",
            str(args.classes),
            "--child",
            method,
        ]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        cases[method] = json.loads(out.stdout.strip().splitlines()[-1])
    m, o = cases["medseg"], cases["monai"]
    print(
        f"input {size} at {SPACING} mm → {sw['shape']} at {TARGET} mm, patch {patch}, {args.classes} classes, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'stage':44s} {'medseg':>10s} {'MONAI':>10s} {'speed-up':>9s}")
    print(
        f"{'sliding window (same tensor) [s]':44s} {sw['medseg_s']:10.2f} {sw['monai_s']:10.2f} {sw['monai_s'] / sw['medseg_s']:8.2f}×"
    )
    print(
        f"{'sliding window (same tensor) [CPU s]':44s} {sw['medseg_cpu_s']:10.2f} {sw['monai_cpu_s']:10.2f} "
        f"{sw['monai_cpu_s'] / sw['medseg_cpu_s']:8.2f}×"
    )
    print(
        f"{'  MONAI inside reuse_freed_memory() [s]':44s} {'':10s} {sw['monai_reuse_s']:10.2f} "
        f"{sw['monai_reuse_s'] / sw['medseg_s']:8.2f}×"
    )
    print(f"{'  max |medseg − MONAI| logits':44s} {sw['max_abs_diff']:10.2e}")
    print(
        f"{'softmax+invert+argmax+largest CC+save [s]':44s} {m['post_s']:10.2f} {o['post_s']:10.2f} {o['post_s'] / m['post_s']:8.2f}×"
    )
    print(f"{'whole case: resample [s]':44s} {m['preprocess_s']:10.2f} {o['preprocess_s']:10.2f}")
    print(f"{'whole case: sliding window [s]':44s} {m['sliding_window_s']:10.2f} {o['sliding_window_s']:10.2f}")
    print(
        f"{'whole case: peak RSS [MiB]':44s} {m['peak_rss_mib']:10.0f} {o['peak_rss_mib']:10.0f} {o['peak_rss_mib'] / m['peak_rss_mib']:8.2f}×"
    )


if __name__ == "__main__":
    main()
