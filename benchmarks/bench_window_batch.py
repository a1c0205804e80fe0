"""Windows per batch, precision and memory layout of the CPU sliding window, each setting in its own process.

Two networks on the grids the other benchmarks use: the small benchmark U-Net (MONAI ``UNet``, channels
8…64) over the 512×512×200 CT resampled to 1.5 mm (273×273×333, 96³ windows), and medseg's U-Net with
nnU-Net's stage widths (32…320, 6 stages) over the 256×256×100 CT's grid (171×171×100, 96³ windows, as
``run.py --sections nnunet``). Prints seconds and peak RSS (``VmHWM``) per setting; ``--results`` writes
the table into ``benchmarks/RESULTS.md`` (block ``window_batch``). It is the evidence behind
``medseg.inference.batching`` (windows per batch on a CPU) and the choice of the memory layout.

Run: ``python benchmarks/bench_window_batch.py --results benchmarks/RESULTS.md`` (about 4 min, 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import load_average, machine, peak_rss_mib, run_child, update_section

GRIDS = {"small": (273, 273, 333), "nnunet": (171, 171, 100)}
SETTINGS = [
    ("small", 4, "float32", "ncdhw"),
    ("small", 1, "float32", "ncdhw"),
    ("small", 4, "bfloat16", "ncdhw"),
    ("small", 1, "bfloat16", "ncdhw"),
    ("small", 4, "bfloat16", "channels_last"),
    ("nnunet", 4, "float32", "ncdhw"),
    ("nnunet", 1, "float32", "ncdhw"),
    ("nnunet", 4, "bfloat16", "ncdhw"),
    ("nnunet", 1, "bfloat16", "ncdhw"),
]


def network(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "small":
        from monai.networks.nets import UNet

        return UNet(3, 1, 5, channels=(8, 16, 32, 64), strides=(2, 2, 2), num_res_units=1).eval()
    from medseg.networks import build_network

    return build_network("unet", in_channels=1, out_channels=5, spatial_dims=3, n_stages=6, base_channels=32,
                         max_channels=320).eval()  # fmt: skip


def child(name: str, batch: int, precision: str, layout: str) -> dict:
    from medseg.inference import sliding_window_inference

    torch.set_num_threads(2)
    net = network(name)
    if layout == "channels_last":
        net = net.to(memory_format=torch.channels_last_3d)
    x = torch.rand(1, 1, *GRIDS[name])
    t0 = time.perf_counter()
    sliding_window_inference(
        x, net, patch_size=(96, 96, 96), batch_size=batch, activation_budget_mib=None,  # exactly `batch` windows
        precision=None if precision == "float32" else torch.bfloat16,
    )  # fmt: skip
    return {"seconds": time.perf_counter() - t0, "peak_rss_mib": peak_rss_mib()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", nargs=4, metavar=("NET", "BATCH", "PRECISION", "LAYOUT"), help=argparse.SUPPRESS)
    ap.add_argument("--results", type=Path, help="write the table into this RESULTS.md")
    args = ap.parse_args()
    if args.child:
        name, batch, precision, layout = args.child
        print(json.dumps(child(name, int(batch), precision, layout)))
        return
    rows = []
    for name, batch, precision, layout in SETTINGS:
        res = run_child(Path(__file__), ["--child", name, str(batch), precision, layout])
        rows.append((name, batch, precision, layout, res["seconds"], res["peak_rss_mib"]))
        print(
            f"{name:7s} batch {batch} {precision:9s} {layout:13s} {res['seconds']:6.1f} s {res['peak_rss_mib']:7.0f} MiB"
        )
    if args.results:
        m = machine()
        lines = [
            f"`python benchmarks/bench_window_batch.py --results benchmarks/RESULTS.md` — {m['date']}, {m['cpu']}, "
            f"{m['cores']} cores, commit {m['commit']}; each setting in its own process, 96³ windows, overlap 0.5.",
            "",
            "| network | grid | windows per batch | precision | layout | seconds | peak RSS [MiB] |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, batch, precision, layout, sec, mib in rows:
            grid = "×".join(str(v) for v in GRIDS[name])
            lines.append(f"| {name} | {grid} | {batch} | {precision} | {layout} | {sec:.1f} | {mib:.0f} |")
        lines.append(f"\nLoad average after the run: {load_average()}.")
        update_section(args.results, "window_batch", "\n".join(lines))


if __name__ == "__main__":
    main()
