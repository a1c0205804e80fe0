"""The phantom task of ``benchmarks/qc.py``: a small CT model trained with ``--fold all`` (so it carries a QC
calibration) and held-out phantoms, many of them corrupted the way real data goes wrong.

Training: ``TRAIN_CASES`` seeded CT phantoms (``medseg.data.ct_phantom``: liver, spleen, left kidney; seeds
1000+i, noise 10–30 HU), 2 folds, a 3-stage U-Net on a 4 mm grid, mirroring along Z in training and at test
time, so the prediction has mirrored passes and two folds to disagree. Test: held-out phantoms (seeds 2000+i),
clean or corrupted by one of :func:`corruptions`. Truth: per case the mean Dice over the labels present in the
reference or the prediction (a hallucinated organ counts 0).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import medseg
from medseg.core.volume import Volume
from medseg.data.phantoms import ORGANS, ct_phantom

ORGANS_USED = ORGANS[:3]
LABELS = {o.label: o.name for o in ORGANS_USED}
SHAPE = (56, 56, 40)
SPACING = (3.0, 3.0, 4.0)
TRAIN_CASES = 8

#: (image HU (X, Y, Z), label (X, Y, Z), affine) → the same, corrupted.
Corruption = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def pipeline_config(quick: bool) -> dict[str, Any]:
    """The pipeline trained on the phantoms (a few minutes per fold on a CPU; ``quick``: seconds)."""
    epochs, iterations = (1, 2) if quick else (30, 12)
    return {
        "name": "qc-phantoms",
        "input": {"modality": "CT", "channels": ["CT"], "labels": LABELS},
        "preprocess": [
            {"reorient": {"axcodes": "RAS"}},
            {"resample": {"spacing": [4.0, 4.0, 4.0]}},
            {"clip": {"low": -160, "high": 240}},
            {"scale_intensity": {"low": -160, "high": 240}},
        ],
        "network": {"name": "unet", "options": {"n_stages": 3, "base_channels": 8, "deep_supervision": False}},
        "training": {
            "patch_size": [32, 32, 32], "batch_size": 2, "max_epochs": epochs, "iterations_per_epoch": iterations,
            "optimizer": "adamw", "lr": 3e-3, "device": "cpu", "progress": False, "val_every": 1000,
            "augment": {"flip_axes": [2]},
        },
        "inference": {"patch_size": [32, 32, 32], "overlap": 0.25, "mirror_axes": [2]},
        "postprocess": [],
    }  # fmt: skip


def _ellipsoid(shape: tuple[int, ...], centre: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0


def _flip_affine(affine: np.ndarray, axis: int, n: int) -> np.ndarray:
    flip = np.eye(4)
    flip[axis, axis], flip[axis, 3] = -1.0, n - 1
    return affine @ flip


def corruptions() -> dict[str, Corruption]:
    """name → corruption; the name says what and how strong (several strengths, so some may not hurt)."""
    rng = np.random.default_rng(7)

    def noise(sigma: float) -> Corruption:
        return lambda a, r, m: (a + rng.normal(0.0, sigma, a.shape).astype(np.float32), r, m)

    def absent(value: int) -> Corruption:
        return lambda a, r, m: (np.where(r == value, 40.0, a).astype(np.float32), np.where(r == value, 0, r), m)

    def decoy(centre: tuple[float, float, float], radius: float) -> Corruption:
        def add(a: np.ndarray, r: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            blob = _ellipsoid(a.shape, centre, (radius, radius, 1.3 * radius)) & (r == 0) & (a > -500)
            return np.where(blob, 60.0 + rng.normal(0, 15, a.shape), a).astype(np.float32), r, m

        return add

    def bias(strength: float) -> Corruption:
        def field(a: np.ndarray, r: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            x = np.linspace(-1, 1, a.shape[0], dtype=np.float32)[:, None, None]
            return ((a + 1000.0) * (1.0 + strength * x) - 1000.0).astype(np.float32), r, m

        return field

    def cut(fraction: float) -> Corruption:
        return lambda a, r, m: (a[..., : int(fraction * a.shape[2])], r[..., : int(fraction * r.shape[2])], m)

    def other_modality(a: np.ndarray, r: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A T1-like contrast in HU-like units: fat bright, liver brighter than spleen, kidney dark."""
        hu = [-1000.0, -100.0, 40.0, 45.0, 60.0, 150.0]
        mr = [-1000.0, 220.0, 10.0, -40.0, 120.0, -90.0]
        return np.interp(a, hu, mr).astype(np.float32), r, m

    def flip_header(axis: int) -> Corruption:
        return lambda a, r, m: (a, r, _flip_affine(m, axis, a.shape[axis]))

    return {
        "noise_60": noise(60.0), "noise_150": noise(150.0), "noise_300": noise(300.0),
        "negated": lambda a, r, m: (-a, r, m), "negated_offset": lambda a, r, m: (-a - 1000.0, r, m),
        "other_modality": other_modality,
        "decoy_small": decoy((-0.3, -0.35, -0.3), 0.12), "decoy_large": decoy((-0.35, -0.3, -0.2), 0.22),
        "decoy_mid": decoy((0.0, -0.45, -0.5), 0.16),
        "bias_0.3": bias(0.3), "bias_0.8": bias(0.8),
        "absent_spleen": absent(2), "absent_kidney": absent(3), "absent_liver": absent(1),
        "cut_z_70": cut(0.7), "cut_z_50": cut(0.5), "cut_z_35": cut(0.35),
        "flip_header_lr": flip_header(0), "flip_header_ap": flip_header(1),
    }  # fmt: skip


def write_training(folder: Path, n_cases: int) -> Path:
    """Write ``n_cases`` training phantoms as a medseg/nnU-Net dataset; returns its folder."""
    for i in range(n_cases):
        image, label = ct_phantom(SHAPE, SPACING, organs=ORGANS_USED, seed=1000 + i, noise_hu=10.0 + 20.0 * (i % 3) / 2)
        medseg.write(image, folder / "imagesTr" / f"phantom_{i:03d}_0000.nii.gz")
        medseg.write(label, folder / "labelsTr" / f"phantom_{i:03d}.nii.gz")
    meta = {"channel_names": {"0": "CT"}, "labels": {"background": 0, **{n: v for v, n in LABELS.items()}},
            "numTraining": n_cases, "file_ending": ".nii.gz"}  # fmt: skip
    (folder / "dataset.json").write_text(json.dumps(meta))
    return folder


def write_tests(folder: Path, n_clean: int, quick: bool, seed: int = 2000) -> dict[str, tuple[Path, Path]]:
    """Write the held-out cases: ``n_clean`` clean ones and one per corruption, phantom seeds ``seed + i``;
    name → (image, reference)."""
    names = [f"clean_{i}" for i in range(n_clean)] + list(corruptions())
    if quick:
        names = [*names[:1], "negated", "cut_z_50"]
    out: dict[str, tuple[Path, Path]] = {}
    fns = corruptions()
    for i, name in enumerate(names):
        image, label = ct_phantom(SHAPE, SPACING, organs=ORGANS_USED, seed=seed + i, noise_hu=10.0 + 20.0 * (i % 3) / 2)
        a, r, m = image.numpy()[0].astype(np.float32), label.numpy()[0], image.affine
        if name in fns:
            a, r, m = fns[name](a, r, m)
        img = Volume(np.round(a).astype(np.int16)[None], m, kind="intensity", meta=dict(image.meta))
        ref = Volume(np.ascontiguousarray(r)[None].astype(np.uint8), m, kind="label")
        out[name] = (
            medseg.write(img, folder / "in" / f"{name}.nii.gz"),
            medseg.write(ref, folder / "ref" / f"{name}.nii.gz"),
        )
    return out


def case_dice(pred: np.ndarray, ref: np.ndarray) -> tuple[float, dict[str, float]]:
    """Mean Dice over the labels present in ``ref`` or ``pred`` (both ``(X, Y, Z)``), and per label."""
    per: dict[str, float] = {}
    for v in LABELS:
        p, r = pred == v, ref == v
        if p.any() or r.any():
            per[str(v)] = float(2 * np.logical_and(p, r).sum() / (p.sum() + r.sum()))
    return (float(np.mean(list(per.values()))) if per else 1.0), per


def auroc(scores: list[float], positive: list[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` for ``positive`` (Mann–Whitney; ties count ½); None without both classes."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    if not pos or not neg:
        return None
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def train(folder: Path, quick: bool, reuse: bool = False) -> Path:
    """Train both folds, choose the post-processing and fit the calibration (``medseg train --fold all``);
    returns the run folder's ``final_pipeline.yaml``. ``reuse``: folds already trained in ``folder`` are kept
    (the out-of-fold predictions, post-processing and calibration are redone)."""
    from medseg.pipeline import Pipeline
    from medseg.planning.postprocessing import determine_postprocessing

    data = write_training(folder / "data", 4 if quick else TRAIN_CASES)
    pipeline = Pipeline.from_dict(pipeline_config(quick))
    run = folder / "run"
    for k in range(2):
        if not (reuse and (run / f"fold_{k}" / "best.pt").is_file()):
            pipeline.train(data, run, fold=k, n_folds=2, resume=False)
    determine_postprocessing(run, data, pipeline, n_folds=2, device="cpu")
    return run / "final_pipeline.yaml"


def run_task(
    folder: Path, *, quick: bool, repeats: int, bad_dice: float, reuse: bool = False, test_seed: int = 2000
) -> list[str]:
    """Train (``reuse``: keep trained folds), predict the held-out phantoms (seeds from ``test_seed``), score;
    the RESULTS lines."""
    import time

    from medseg.batch import Case, run_batch
    from medseg.pipeline import Pipeline
    from medseg.pipeline.processor import PipelineProcessor

    t0 = time.perf_counter()
    final = Pipeline.from_yaml(train(folder, quick, reuse))
    t_train = time.perf_counter() - t0
    cases = write_tests(folder / "test", 10, quick, test_seed)
    processor = PipelineProcessor(final, final.checkpoint_paths(), device="cpu", exporters=["nifti"])
    out = folder / "out"
    shutil.rmtree(out, ignore_errors=True)  # a kept folder: predict again (the batch would skip finished cases)
    report = run_batch([Case(n, (p,)) for n, (p, _) in cases.items()], processor, out, progress=False)
    rows, errors, records = [], [], []
    for row in report.rows:
        if row.status != "succeeded":
            raise RuntimeError(f"{row.case_id}: {row.error}")
        pred = medseg.read(out / f"{row.case_id}.nii.gz").numpy()[0]
        d, per = case_dice(pred, medseg.read(cases[row.case_id][1]).numpy()[0])
        qc = json.loads((out / f"{row.case_id}.provenance.json").read_text())["qc"]
        records.append(qc)
        guess = qc.get("qc_predicted_dice") or {}
        errors += [abs(guess.get(v, 0.0) - t) for v, t in per.items()] if guess else []
        guess_mean = float(np.mean([guess.get(v, 0.0) for v in per])) if guess and per else None
        first = row.qc_flags[0] if row.qc_flags else ""
        rows.append((row.case_id, d, row.qc_score, _baseline(qc), guess_mean, first))
    cost = _cost(final, [p for n, (p, _) in cases.items() if n.startswith("clean")][:3], repeats)
    signals = _signal_lines(records, [r[1] for r in rows], folder / "run" / "cv_predictions", bad_dice)
    return [*_lines(rows, errors, cost, t_train, bad_dice, final), "", *signals]


def _signal_lines(records: list[dict], dice: list[float], cv_dir: Path, bad_dice: float) -> list[str]:
    """The per-signal table (:mod:`qc_signals`) under its heading."""
    from qc_signals import out_of_fold, table

    labels = [str(v) for v in LABELS]
    oof = out_of_fold(cv_dir, labels)
    return [
        "Which signals carry information: each alone, pooled over labels (the worst label); AUROC on the held-out "
        "cases, Pearson r of the (higher = worse) value with the mean Dice on the out-of-fold cases (negative: "
        "informative), pooled and within folds (each fold is another model: pooled, the folds' difference can "
        "dominate so few cases). A signal that scores 0 on every good case ties with an undetected bad one, "
        "which earns it half a pair: a continuous score does not get that credit.",
        "",
        *table(records, dice, oof, labels, bad_dice),
    ]


def _baseline(qc: dict[str, Any]) -> float:
    u = [v["max_softmax"] for v in (qc.get("uncertainty") or {}).values()]
    return 1.0 - float(np.mean(u)) if u else 1.0


def _cost(final: Any, paths: list[Path], repeats: int) -> tuple[float, float, float]:
    from qc import qc_cost

    return qc_cost(final.predictor(device="cpu"), paths, repeats)


def _lines(
    rows: list[tuple], errors: list[float], cost: tuple[float, float, float], t_train: float, bad_dice: float,
    final: Any,
) -> list[str]:  # fmt: skip
    from qc import _cost_line, _f

    bad = [r[1] < bad_dice for r in rows]
    a_qc, a_base = auroc([r[2] for r in rows], bad), auroc([r[3] for r in rows], bad)
    mae = float(np.mean(errors)) if errors else None
    case_mae = [abs(r[4] - r[1]) for r in rows if r[4] is not None]
    print(f"phantoms: AUROC qc_score {a_qc}, baseline {a_base}; bad {sum(bad)} of {len(rows)}; MAE {mae}; cost {cost}")
    for r in rows:
        print(r)
    cal = json.dumps({k: round(v["ratio"], 3) for k, v in (final_calibration(final) or {}).items()})
    return [
        f"**Phantoms.** A 3-stage U-Net trained on {TRAIN_CASES} CT phantoms in 2 folds ({t_train:.0f} s with the "
        f"out-of-fold predictions; calibration ratio per label {cal}), {len(rows)} held-out phantoms; "
        f"bad = mean Dice over the labels < {bad_dice}.",
        "",
        "| case | Dice | qc_score | 1 − mean max-softmax | predicted Dice | first flag |",
        "|---|---:|---:|---:|---:|---|",
        *(f"| {r[0]} | {_f(r[1])} | {_f(r[2])} | {_f(r[3])} | {_f(r[4])} | {r[5]} |" for r in rows),
        "",
        f"AUROC for Dice < {bad_dice} ({sum(bad)} bad of {len(rows)}): **qc_score {_f(a_qc)}**, baseline 1 − mean "
        f"max-softmax {_f(a_base)}. Mean absolute error of `qc_predicted_dice`: **{_f(mae)}** per case and label "
        f"({len(errors)} pairs), {_f(float(np.mean(case_mae)) if case_mae else None)} per case (mean over labels).",
        "",
        _absent_line(rows, bad_dice),
        "",
        _cost_line(cost, "clean phantoms, 2 folds × 2 mirrored passes, median per case"),
    ]


def _absent_line(rows: list[tuple], bad_dice: float) -> str:
    """The AUROC without the ``absent_*`` cases: there the reference lacks an organ, so the benchmark's Dice
    (labels absent from both left out) counts a missing organ as right, while QC flags an expected organ that
    is missing (a resection or a failure: a coordinator reviews it) by design."""
    from qc import _f

    kept = [r for r in rows if not r[0].startswith("absent_")]
    bad = [r[1] < bad_dice for r in kept]
    a_qc, a_base = auroc([r[2] for r in kept], bad), auroc([r[3] for r in kept], bad)
    return (
        f"Without the {len(rows) - len(kept)} `absent_*` cases (an organ missing from the reference: the Dice "
        f"counts its absence as right, QC flags a missing expected organ by design; {sum(bad)} bad of {len(kept)}): "
        f"qc_score {_f(a_qc)}, baseline {_f(a_base)}."
    )


def final_calibration(final: Any) -> dict[str, Any] | None:
    """The calibration the final pipeline's first fold carries."""
    from medseg.training import load_checkpoint

    summary = load_checkpoint(final.checkpoint_paths()[0]).training_summary or {}
    return (summary.get("calibration") or {}).get("labels")
