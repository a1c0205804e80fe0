"""CPU inference backends for the network stage: torch float32, torch bfloat16 (medseg's default on CPUs with
native bfloat16) and ONNX Runtime (float32, the ONNX file ``medseg model export --onnx`` writes).

One 96³ window of the e2e benchmark's trained U-Net per forward, median of ``--repeats`` after a warm-up,
two intra-op threads each; the ONNX logits are checked against torch float32 (max |difference|). A
backend is worth adopting as ``inference.backend`` only at ≥ 1.3× torch bfloat16 (issue's bar);
``--results`` writes the table into benchmarks/RESULTS.md (block ``backends``).

Run: ``python benchmarks/bench_backends.py --results benchmarks/RESULTS.md`` (about 1 min).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import OUT, load_average, load_unet, machine, trained_unet, update_section


def timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up: kernel selection, first allocations
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--results", type=Path, help="write the table into this RESULTS.md")
    args = ap.parse_args()
    import onnxruntime as ort

    from medseg.models.onnx_export import export_onnx

    torch.set_num_threads(2)
    net = load_unet(trained_unet(OUT)).eval()
    x = torch.rand(1, 1, *(args.patch,) * 3)
    with torch.no_grad():
        reference = net(x).numpy()
        t32 = timed(lambda: net(x), args.repeats)

        def bf16() -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net(x)

        t16 = timed(bf16, args.repeats)
    data, _ = export_onnx(net, x)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (ours,) = session.run(None, {name: x.numpy()})
    tort = timed(lambda: session.run(None, {name: x.numpy()}), args.repeats)
    diff = float(np.abs(ours - reference).max())
    if diff > 1e-3:
        raise SystemExit(f"ONNX Runtime's logits differ from torch's by {diff:.2g} (> 1e-3): not the same network")
    rows = [
        ("torch float32", t32, "reference"),
        ("torch bfloat16 (autocast)", t16, "-"),
        (f"ONNX Runtime {ort.__version__} float32", tort, f"max abs difference {diff:.1e}"),
    ]
    for label, sec, note in rows:
        print(f"{label:34s} {sec * 1000:8.1f} ms/window  {t16 / sec:5.2f}× torch bfloat16  {note}")
    if args.results:
        m = machine()
        lines = [
            f"`python benchmarks/bench_backends.py --results benchmarks/RESULTS.md` — {m['date']}, {m['cpu']}, "
            f"2 intra-op threads, commit {m['commit']}; one {args.patch}³ window of the e2e benchmark's trained "
            f"U-Net, median of {args.repeats}.",
            "",
            "| backend | ms per window | speed vs torch bfloat16 | logits |",
            "|---|---:|---:|---|",
            *(f"| {label} | {sec * 1000:.1f} | {t16 / sec:.2f}× | {note} |" for label, sec, note in rows),
            "",
            f"Load average after the run: {load_average()}.",
        ]
        update_section(args.results, "backends", "\n".join(lines))


if __name__ == "__main__":
    main()
