"""Does ``qc_score`` find the bad masks? Two tasks: corrupted CT phantoms through a small model trained here with
``--fold all`` (so it carries a QC calibration), and corrupted copies of the held-out Colin27 case through the
demo model.

Phantoms (:mod:`qc_phantoms`): a 3-stage U-Net trained on 8 seeded phantoms in 2 folds (out-of-fold predictions
choose the post-processing and fit the calibration), then ~30 held-out phantoms, 10 clean and one per corruption
(noise, wrong sign, another modality's contrast, decoy structures, bias field, absent organ, truncated field of
view, flipped header; several strengths). Reported: per case the true Dice, ``qc_score``, the baseline,
``qc_predicted_dice``; the AUROC of each score for "Dice < 0.7"; the mean absolute error of the predicted Dice
(per case and label); the extra prediction time of QC on the clean cases.

Colin27 cases: the demo's held-out Colin27 copy (LPS, 1.3×1.1×1.6 mm, gamma 0.8, noise) and variants of it that should
not matter (another gamma, a global intensity scale, a little more noise) or should (strong noise, negated
intensities, inverted contrast inside the head, the field of view cut along Z, the header flipped along an axis).
Each case is predicted by ``PipelineProcessor`` with the shipped demo checkpoint (which carries its training
summary); its Dice against the BET reference (transformed with it) is the truth. Reported: per-case Dice,
``qc_score`` and the baseline "1 − mean max-softmax inside the predicted brain"; the AUROC of each for
"Dice < 0.7"; the cost of the QC measurements on the clean case (median of ``--repeats``, with and without).
``--results`` writes the tables into benchmarks/RESULTS.md (block ``qc``).

The phantom part also gives, per signal and raw measurement, its AUROC alone on the held-out cases and its
correlation with Dice on the out-of-fold cases (:mod:`qc_signals`): which signals carry information.

Run: ``python benchmarks/qc.py --results benchmarks/RESULTS.md`` (about 10 min on 2 CPU cores); ``--quick``: a
smoke test of the whole path in about a minute (its figures mean nothing). To iterate on the scoring without
retraining: ``--keep DIR --reuse`` (the folds trained in DIR are kept); ``--test-seed`` draws other held-out
phantoms (the figures developed on one seed are best checked on another).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import load_average, machine, update_section  # noqa: E402
from qc_phantoms import auroc, run_task  # noqa: E402

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


def qc_cost(predictor: Any, image_paths: list[Path], repeats: int) -> tuple[float, float, float]:
    """Median seconds per case of ``predict_preprocessed`` without and with QC (measurements and the pass/fold
    agreement), and of the measurements alone, over ``repeats`` rounds of ``image_paths`` (alternating)."""
    without, with_qc, part = [], [], []
    for _ in range(repeats):
        for path in image_paths:
            volume = medseg.read(path)
            pre = predictor.run_preprocess(volume)
            t0 = time.perf_counter()
            predictor.predict_preprocessed(volume, pre)
            without.append(time.perf_counter() - t0)
            measured: dict = {}
            t0 = time.perf_counter()
            predictor.predict_preprocessed(volume, pre, measurements=measured)
            with_qc.append(time.perf_counter() - t0)
            part.append(measured["seconds"])
    return statistics.median(without), statistics.median(with_qc), statistics.median(part)


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _cost_line(cost: tuple[float, float, float], what: str) -> str:
    extra = 100.0 * (cost[1] / cost[0] - 1.0)
    return (
        f"Cost on {what} (CPU, one process): `predict_preprocessed` {cost[0]:.2f} s without QC, {cost[1]:.2f} s with "
        f"it (**{extra:+.1f} %**); the measurements after the network {cost[2]:.3f} s."
    )


def baseline(qc: dict[str, Any]) -> float:
    """1 − mean max-softmax inside the predicted foreground (mean over the predicted labels; 1 when none)."""
    u = [v["max_softmax"] for v in (qc.get("uncertainty") or {}).values()]
    return 1.0 - float(np.mean(u)) if u else 1.0


def colin27(folder: Path, repeats: int) -> list[str]:
    """The Colin27 variants through the demo checkpoint; the RESULTS lines."""
    from medseg.batch import Case, run_batch
    from medseg.cli.predict import load_pipeline_and_checkpoints
    from medseg.metrics import dice
    from medseg.pipeline.predict import make_predictor
    from medseg.pipeline.processor import PipelineProcessor

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
        qc = json.loads((folder / "out" / f"{row.case_id}.provenance.json").read_text())["qc"]
        first = row.qc_flags[0] if row.qc_flags else ""
        rows.append((row.case_id, expected, d, row.qc_score, baseline(qc), first))
    cost = qc_cost(make_predictor(pipeline, ckpts, device="cpu"), [cases["clean"][1]], repeats)
    done = [r for r in rows if r[2] is not None]
    bad = [r[2] < BAD_DICE for r in done]
    a_qc, a_base = auroc([r[3] for r in done], bad), auroc([r[4] for r in done], bad)
    print(f"colin27: AUROC qc_score {a_qc}, baseline {a_base}; bad {sum(bad)} of {len(done)}; cost {cost}")
    return [
        f"**Colin27.** Demo checkpoint (trained on one T1 subject) on {len(rows)} variants of the held-out Colin27 "
        f"copy; bad = Dice < {BAD_DICE} against the BET reference.",
        "",
        "| case | expected | Dice | qc_score | 1 − mean max-softmax | first flag |",
        "|---|---|---:|---:|---:|---|",
        *(f"| {r[0]} | {r[1]} | {_f(r[2])} | {_f(r[3])} | {_f(r[4])} | {r[5]} |" for r in rows),
        "",
        f"AUROC for Dice < {BAD_DICE} ({sum(bad)} bad of {len(done)}): qc_score {_f(a_qc)}, "
        f"baseline 1 − mean max-softmax {_f(a_base)}.",
        "",
        _cost_line(cost, f"the clean case, median of {repeats}"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny training, 3 phantom cases")
    ap.add_argument("--tasks", default="phantoms,colin27", help="comma-separated: phantoms, colin27")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    ap.add_argument(
        "--reuse", action="store_true", help="with --keep: keep the phantom folds already trained there (the "
        "out-of-fold predictions, post-processing and calibration are redone)",
    )  # fmt: skip
    ap.add_argument("--test-seed", type=int, default=2000, help="first phantom seed of the held-out cases")
    ap.add_argument("--results", type=Path, help="write the tables into this RESULTS.md")
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    repeats = 1 if args.quick else args.repeats
    load_before = load_average()
    t_start = time.perf_counter()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="medseg-qc-bench-") as tmp:
        folder = args.keep or Path(tmp)
        if "phantoms" in tasks:
            lines += [
                *run_task(folder / "phantoms", quick=args.quick, repeats=repeats, bad_dice=BAD_DICE,
                          reuse=args.reuse and args.keep is not None, test_seed=args.test_seed),
                "",
            ]  # fmt: skip
        if "colin27" in tasks:
            lines += [*colin27(folder / "colin27", repeats), ""]
    elapsed = time.perf_counter() - t_start
    print(f"took {elapsed:.0f} s")
    if args.results:
        m = machine()
        head = (
            f"`python benchmarks/qc.py --results benchmarks/RESULTS.md{' --quick' if args.quick else ''}` — "
            f"{m['date']}, {m['cpu']}, commit {m['commit']}; run took {elapsed:.0f} s; load average before/after: "
            f"{load_before} / {load_average()} (a shared machine: indicative figures)."
        )
        update_section(args.results, "qc", "\n".join([head, "", *lines]))


if __name__ == "__main__":
    main()
