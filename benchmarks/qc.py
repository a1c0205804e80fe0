"""Does ``qc_score`` find the bad masks? Corrupted copies of the held-out Colin27 case through the demo model.

Cases: the demo's held-out Colin27 copy (LPS, 1.3×1.1×1.6 mm, gamma 0.8, noise) and variants of it that should
not matter (another gamma, a global intensity scale, a little more noise) or should (strong noise, negated
intensities, inverted contrast inside the head, the field of view cut along Z, the header flipped along an axis).
Each case is predicted by ``PipelineProcessor`` with the shipped demo checkpoint (which carries its training
summary); its Dice against the BET reference (transformed with it) is the truth. Reported: per-case Dice,
``qc_score`` and the baseline "1 − mean max-softmax inside the predicted brain"; the AUROC of each for
"Dice < 0.7"; the cost of the QC measurements on the clean case (median of ``--repeats``, with and without).
``--results`` writes the tables into benchmarks/RESULTS.md (block ``qc``).

Run: ``python benchmarks/qc.py --results benchmarks/RESULTS.md`` (about 2 min on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import load_average, machine, update_section  # noqa: E402

import medseg  # noqa: E402
from medseg.core.volume import Volume  # noqa: E402

CHECKPOINT = ROOT / "sample_data" / "checkpoints" / "brain_mask_mr.pt"
#: A mask below this Dice is "bad".
BAD_DICE = 0.7

Variant = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _flip_header(image: Volume, axis: int) -> Volume:
    """The same voxels with the affine mirrored along array ``axis`` (a header that says the wrong way round)."""
    flip = np.eye(4)
    flip[axis, axis] = -1.0
    flip[axis, 3] = image.spatial_shape[axis] - 1
    return image.replace(affine=image.affine @ flip)


def variants(seed: int = 0) -> dict[str, tuple[str, Variant]]:
    """name → (expected, transform of (image array, reference array)); expected is ``ok`` or ``bad``."""
    rng = np.random.default_rng(seed)

    def noise(sigma: float) -> Variant:
        return lambda a, r: (a + rng.normal(0.0, sigma, a.shape).astype(np.float32), r)

    def cut(fraction: float) -> Variant:
        return lambda a, r: (a[..., : int(fraction * a.shape[3])].copy(), r[..., : int(fraction * r.shape[3])].copy())

    def inverted(a: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        head = a > 20
        return np.where(head, 255.0 - a, a).astype(np.float32), r

    def folded(a: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Another contrast: intensities folded around 100 (grey/white matter brighter than CSF, then darker)."""
        return (2.0 * np.abs(a - 100.0)).astype(np.float32), r

    return {
        "clean": ("ok", lambda a, r: (a, r)),
        "gamma_1.2": ("ok", lambda a, r: ((255.0 * (np.clip(a, 0, None) / 255.0) ** 1.2).astype(np.float32), r)),
        "scale_x3": ("ok", lambda a, r: (3.0 * a, r)),
        "noise_8": ("ok", noise(8.0)),
        "noise_40": ("?", noise(40.0)),
        "noise_80": ("?", noise(80.0)),
        "noise_160": ("?", noise(160.0)),
        "negated": ("bad", lambda a, r: (-a, r)),
        "folded_contrast": ("bad", folded),
        "inverted_contrast": ("bad", inverted),
        "cut_z_85": ("?", cut(0.85)),
        "cut_z_70": ("?", cut(0.70)),
        "cut_z_55": ("?", cut(0.55)),
        "cut_z_40": ("?", cut(0.40)),
    }


def auroc(scores: list[float], positive: list[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` for ``positive`` (Mann–Whitney; ties count ½); None without both classes."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    if not pos or not neg:
        return None
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def make_cases(folder: Path) -> dict[str, tuple[str, Path, Path]]:
    """Write every variant (and the header flips) with its reference; name → (expected, image, reference)."""
    from medseg.demo import heldout_copy

    t1 = medseg.read(ROOT / "sample_data" / "colin27" / "ch2.nii.gz")
    bet = medseg.read(ROOT / "sample_data" / "colin27" / "ch2bet.nii.gz")
    image, ref = heldout_copy(t1, Volume((bet.numpy() > 0).astype(np.uint8), bet.affine, kind="label"))
    out: dict[str, tuple[str, Path, Path]] = {}
    for name, (expected, fn) in variants().items():
        a, r = fn(image.numpy(), ref.numpy())
        img_path = medseg.write(image.replace(array=a), folder / "in" / f"{name}.nii.gz")
        ref_path = medseg.write(ref.replace(array=r), folder / "ref" / f"{name}.nii.gz")
        out[name] = (expected, img_path, ref_path)
    for axis, what in ((1, "flip_header_ap"), (2, "flip_header_si")):
        img_path = medseg.write(_flip_header(image, axis), folder / "in" / f"{what}.nii.gz")
        ref_path = medseg.write(_flip_header(ref, axis), folder / "ref" / f"{what}.nii.gz")
        out[what] = ("?", img_path, ref_path)
    return out


def qc_cost(repeats: int, image_path: Path) -> tuple[float, float, float]:
    """Median seconds of ``predict_preprocessed`` without and with the QC measurements, and of the measurements."""
    from medseg.cli.predict import load_pipeline_and_checkpoints
    from medseg.pipeline.predict import make_predictor

    pipeline, ckpts = load_pipeline_and_checkpoints(CHECKPOINT, None)
    predictor = make_predictor(pipeline, ckpts, device="cpu")
    volume = medseg.read(image_path)
    pre = predictor.run_preprocess(volume)
    without, with_qc, part = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predictor.predict_preprocessed(volume, pre)
        without.append(time.perf_counter() - t0)
        measured: dict = {}
        t0 = time.perf_counter()
        predictor.predict_preprocessed(volume, pre, measurements=measured)
        with_qc.append(time.perf_counter() - t0)
        part.append(measured["seconds"])
    return statistics.median(without), statistics.median(with_qc), statistics.median(part)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--results", type=Path, help="write the tables into this RESULTS.md")
    args = ap.parse_args()
    from medseg.batch import Case, run_batch
    from medseg.cli.predict import load_pipeline_and_checkpoints
    from medseg.metrics import dice
    from medseg.pipeline.processor import PipelineProcessor

    load_before = load_average()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medseg-qc-bench-") as tmp:
        folder = Path(tmp)
        cases = make_cases(folder)
        pipeline, ckpts = load_pipeline_and_checkpoints(CHECKPOINT, None)
        processor = PipelineProcessor(pipeline, ckpts, device="cpu", exporters=["nifti"])
        report = run_batch([Case(n, (p,)) for n, (_, p, _) in cases.items()], processor, folder / "out", progress=False)
        rows = []
        for row in report.rows:
            expected, _, ref_path = cases[row.case_id]
            if row.status != "succeeded":
                rows.append((row.case_id, expected, None, None, None, row.error))
                continue
            pred = medseg.read(folder / "out" / f"{row.case_id}.nii.gz")
            d = float(dice(pred.numpy()[0], medseg.read(ref_path).numpy()[0], label=1))
            import json

            qc = json.loads((folder / "out" / f"{row.case_id}.provenance.json").read_text())["qc"]
            u = qc["uncertainty"].get("1")
            baseline = 1.0 - u["max_softmax"] if u else 1.0
            first = row.qc_flags[0] if row.qc_flags else ""
            rows.append((row.case_id, expected, d, row.qc_score, baseline, first))
        cost = qc_cost(args.repeats, cases["clean"][1])
    done = [r for r in rows if r[2] is not None]
    bad = [r[2] < BAD_DICE for r in done]
    a_qc = auroc([r[3] for r in done], bad)
    a_base = auroc([r[4] for r in done], bad)
    elapsed = time.perf_counter() - t_start
    for r in rows:
        print(r)
    print(f"AUROC qc_score {a_qc}, baseline {a_base}; bad {sum(bad)} of {len(done)}; cost {cost}")
    if args.results:
        m = machine()

        def f(x: float | None) -> str:
            return "–" if x is None else f"{x:.3f}"

        lines = [
            f"`python benchmarks/qc.py --results benchmarks/RESULTS.md` — {m['date']}, {m['cpu']}, commit {m['commit']}; "
            f"run took {elapsed:.0f} s; load average before/after: {load_before} / {load_average()} (a shared machine).",
            "",
            f"Demo checkpoint (trained on one T1 subject) on {len(rows)} variants of the held-out Colin27 copy; "
            f"bad = Dice < {BAD_DICE} against the BET reference.",
            "",
            "| case | expected | Dice | qc_score | 1 − mean max-softmax | first flag |",
            "|---|---|---:|---:|---:|---|",
            *(f"| {r[0]} | {r[1]} | {f(r[2])} | {f(r[3])} | {f(r[4])} | {r[5]} |" for r in rows),
            "",
            f"AUROC for Dice < {BAD_DICE} ({sum(bad)} bad of {len(done)}): qc_score {f(a_qc)}, "
            f"baseline 1 − mean max-softmax {f(a_base)}.",
            "",
            f"Cost on the clean case (median of {args.repeats}, CPU, one process): `predict_preprocessed` "
            f"{cost[0]:.2f} s without the QC measurements, {cost[1]:.2f} s with them; the measurements themselves "
            f"{cost[2]:.3f} s.",
        ]
        update_section(args.results, "qc", "\n".join(lines))


if __name__ == "__main__":
    main()
