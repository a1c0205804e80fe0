"""Which CPU threading degrades gracefully on a shared machine: torch's default, passive OpenMP waits, one thread.

A small 3D U-Net's training step (8–64 features, 4 stages, 56×56×16 patch, batch 2, medseg's
augmentation and training step) and its inference windows, timed in a fresh child process per
threading set-up (``OMP_WAIT_POLICY`` is read once, when the OpenMP runtime starts), on a quiet
machine and beside busy neighbours that this script starts itself (a pure-Python loop; other
torch jobs at torch's defaults, as another user's training would be). Each cell is the median step time over about ``--seconds``::

    python benchmarks/threads.py                       # prints a Markdown table
    python benchmarks/threads.py --results benchmarks/RESULTS.md

"Quiet" means quiet only if nothing else runs: the load average before and after is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: (label, extra environment) of each threading set-up; torch's threads follow the cores unless set.
SETUPS: list[tuple[str, dict[str, str]]] = [
    ("torch default (2 threads, OpenMP spins while waiting)", {}),
    ("2 threads, OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("1 thread", {"OMP_NUM_THREADS": "1"}),
]
#: Environment variables cleared for every child, so the set-ups differ only in what they set.
CLEARED = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "MEDSEG_THREADING")


def child(seconds: float) -> dict[str, float]:
    """Time training steps and inference windows in this process; milliseconds (median)."""
    import torch

    from medseg.networks import build_network
    from medseg.training.config import TrainingConfig
    from medseg.training.losses import SegmentationLoss
    from medseg.training.step import training_parts, training_step
    from medseg.transforms.augment import Augment

    torch.manual_seed(0)
    device = torch.device("cpu")
    net = build_network(
        "unet",
        in_channels=1,
        out_channels=3,
        spatial_dims=3,
        n_stages=4,
        base_channels=8,
        max_channels=64,
        strides=[[1, 1, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2]],
        deep_supervision=True,
    )
    settings = TrainingConfig.from_dict({"optimizer": "sgd", "lr": 0.01, "loss": "dice_ce"})
    optimizer, precision, scaler = training_parts(net, settings, device)
    loss_fn, augment, generator = SegmentationLoss("dice_ce"), Augment(), torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 56, 56, 16)
    y = torch.randint(0, 3, (2, 1, 56, 56, 16))

    def train() -> None:
        xi, yi = augment(x, y, generator)
        training_step(net, optimizer, loss_fn, scaler, precision, device, 12.0, xi, yi)

    def infer() -> None:
        with torch.inference_mode():
            net.eval()
            net(torch.randn(2, 1, 112, 112, 32))
            net.train()

    return {"train_ms": _median_ms(train, seconds), "infer_ms": _median_ms(infer, seconds / 2)}


def _median_ms(fn, seconds: float) -> float:
    fn()  # warm-up: allocator, kernel selection
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def run_setup(env_extra: dict[str, str], seconds: float) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED} | env_extra | {"MEDSEG_THREADING": "off"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--seconds", str(seconds)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


#: What a busy neighbour runs: a pure-Python loop (one core), or another torch job at torch's defaults.
NEIGHBOURS = {
    "py": "while True: pass",
    "torch": "import torch\nx = torch.randn(2, 8, 48, 48, 48)\nc = torch.nn.Conv3d(8, 8, 3, padding=1)\n"
    "while True: c(x).sum().backward()",
}


def spinners(spec: str) -> list[subprocess.Popen]:
    """The busy neighbours ``spec`` names (``"0"``, ``"py1"``, ``"torch2"``), killed by the caller."""
    if spec == "0":
        return []
    kind, n = spec.rstrip("0123456789"), int(spec.lstrip("abcdefghijklmnopqrstuvwxyz"))
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return [subprocess.Popen([sys.executable, "-c", NEIGHBOURS[kind]], env=env) for _ in range(n)]


def table(seconds: float, busy_levels: list[str]) -> str:
    load_before = os.getloadavg()
    results: dict[tuple[int, str], dict[str, float]] = {}
    for n in busy_levels:
        procs = spinners(n)
        try:
            time.sleep(0.0 if n == "0" else 2.0)
            for label, extra in SETUPS:
                results[(n, label)] = run_setup(extra, seconds)
        finally:
            for p in procs:
                p.kill()
                p.wait()
    load_after = os.getloadavg()
    head = "| threading | " + " | ".join(f"train ms, {_busy(n)}" for n in busy_levels)
    head += " | " + " | ".join(f"infer ms, {_busy(n)}" for n in busy_levels) + " |"
    lines = [head, "|---|" + "---:|" * (2 * len(busy_levels))]
    for label, _ in SETUPS:
        cells = [f"{results[(n, label)]['train_ms']:.0f}" for n in busy_levels]
        cells += [f"{results[(n, label)]['infer_ms']:.0f}" for n in busy_levels]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    loads = " ".join(f"{v:.1f}" for v in load_before) + " / " + " ".join(f"{v:.1f}" for v in load_after)
    return (
        f"`python benchmarks/threads.py --seconds {seconds:g}` — {stamp}, {os.cpu_count()} cores; "
        f"load average before/after: {loads}.\n\n" + "\n".join(lines)
    )


def _busy(spec: str) -> str:
    if spec == "0":
        return "quiet"
    kind, n = spec.rstrip("0123456789"), int(spec.lstrip("abcdefghijklmnopqrstuvwxyz"))
    what = "Python loop" if kind == "py" else "torch job"
    return f"beside {n} {what}{'s' if n > 1 else ''}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="timing per cell (default 8)")
    parser.add_argument(
        "--busy",
        default="0,py1,torch1,torch2",
        help="neighbours to measure beside: 0 (quiet), pyN (N Python loops), torchN (N torch jobs); default 0,py1,torch1,torch2",
    )
    parser.add_argument("--results", type=Path, help="replace the threads section of this RESULTS.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.seconds)))
        return
    text = table(args.seconds, args.busy.split(","))
    print(text)
    if args.results:
        from benchmarks.common import update_section

        update_section(args.results, "threads", text)


if __name__ == "__main__":
    main()
