"""Empirical post-processing: keep only the steps that raise the cross-validated Dice.

nnU-Net's ``determine_postprocessing`` (``nnunetv2/postprocessing/remove_connected_components.py``)
predicts every case with the fold that did not train on it, then tries keep-largest on the
whole foreground (kept when the mean foreground Dice rises and no label's falls) and then
keep-largest per label (kept when that label's Dice rises). Here the same greedy procedure
also tries, per label, the pipeline's own post-processing steps (remove-small with the
planned size, hole filling), each kept only when it raises that label's mean Dice over the
out-of-fold predictions. Each per-label step changes only its label's voxels (to
background, or background to the label), so raising that label's Dice raises the mean.

The result goes to ``final_pipeline.yaml`` in the run folder (the fold ensemble with the chosen
steps and the numbers that justified them as comments), ``postprocessing.json``, and the
``postprocess`` section of every fold's ``best.pt``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg.errors import ConfigError, InputError
from medseg.io import read, write, write_text_atomic

if TYPE_CHECKING:
    from medseg.core.volume import Volume
    from medseg.pipeline import Pipeline
    from medseg.training.dataset import Dataset


@dataclass(frozen=True)
class Trial:
    """One candidate step, its labels' mean Dice before and after, and whether it was kept."""

    step: dict[str, Any]
    labels: tuple[int, ...]
    before: dict[int, float]
    after: dict[int, float]
    kept: bool
    rule: str


@dataclass
class PostprocessChoice:
    """What :func:`determine_postprocessing` chose and why."""

    steps: list[dict[str, Any]]
    baseline: dict[int, float]
    final: dict[int, float]
    trials: list[Trial] = field(default_factory=list)
    pipeline_path: Path | None = None
    cases: int = 0

    def summary(self) -> str:
        names = [next(iter(s)) for s in self.steps] or ["none"]
        before = np.mean(list(self.baseline.values())) if self.baseline else float("nan")
        after = np.mean(list(self.final.values())) if self.final else float("nan")
        return f"{', '.join(names)} (cross-validated mean Dice {before:.4f} → {after:.4f} over {self.cases} cases)"


def candidates(pipeline: Pipeline) -> list[tuple[dict[str, Any], tuple[int, ...], str]]:
    """``(step, labels it is judged on, rule)``: nnU-Net's two, then the pipeline's own per label."""
    labels = tuple(sorted(pipeline.labels))
    out: list[tuple[dict[str, Any], tuple[int, ...], str]] = [
        (
            {"keep_largest_component": {"per_label": False, "connectivity": 26}},
            labels,
            "keep the largest foreground component: kept when the mean Dice rises and no label's falls (nnU-Net)",
        )
    ]
    rule = "kept when this label's mean Dice rises"
    out += [
        ({"keep_largest_component": {"per_label": True, "connectivity": 26, "labels": [k]}}, (k,), f"{rule} (nnU-Net)")
        for k in labels
    ]
    for step in pipeline.postprocess:
        if step.name == "keep_largest_component":
            continue
        opts = step.options()
        for k in opts.get("labels") or labels:
            out.append(({step.name: {**opts, "labels": [int(k)]}}, (int(k),), f"{rule} (the pipeline's {step.name})"))
    return out


def _apply(steps: Sequence[dict[str, Any]], label: Volume) -> Volume:
    from medseg.core.steps import build_step

    for item in steps:
        ((name, opts),) = item.items()
        label = build_step(name, **opts)(label)
    return label


def _dice(pred: np.ndarray, ref: np.ndarray, labels: Sequence[int]) -> dict[int, float]:
    from medseg.metrics import dice

    return {k: dice(pred, ref, label=k) for k in labels}


def out_of_fold_predictions(
    run_dir: Path, dataset: Dataset, pipeline: Pipeline, n_folds: int, device: str
) -> dict[str, tuple[Path, Path]]:
    """Predict each case with the fold that validated on it, without post-processing.

    Each case is read by :func:`medseg.training.cache.read_case`, as training reads it: the
    pipeline's ROI→label mapping decides the label values of RTSTRUCT/SEG references and every
    reference is put on the image grid. That reference is written beside the prediction, so the
    choice compares label maps on one grid.

    Returns:
        case id → ``(prediction file, reference label file)``, both in ``run_dir/cv_predictions``
        (``CASE.nii.gz``, ``CASE_reference.nii.gz``) on each case's original grid.
    """
    from medseg.pipeline import Pipeline
    from medseg.qc import assess, input_description
    from medseg.training import load_checkpoint
    from medseg.training.cache import read_case

    splits_file = run_dir / "splits.json"
    if not splits_file.is_file():
        raise ConfigError(f"{run_dir}: no splits.json; train every fold first (medseg train ... --fold all)")
    splits = json.loads(splits_file.read_text())
    if len(splits) != n_folds:
        raise ConfigError(f"{splits_file}: {len(splits)} folds, {n_folds} asked for")
    raw = Pipeline.from_dict({**pipeline.to_dict(), "postprocess": []}, source=pipeline.source)
    out_dir = run_dir / "cv_predictions"
    out: dict[str, tuple[Path, Path]] = {}
    for k, split in enumerate(splits):
        checkpoint = run_dir / f"fold_{k}" / "best.pt"
        if not checkpoint.is_file():
            raise ConfigError(f"{checkpoint}: fold {k} is not trained; run medseg train ... --fold {k}")
        predictor = raw.predictor([checkpoint], device=device)
        summary = load_checkpoint(checkpoint).training_summary
        for case_id in split["val"]:
            case = dataset.case(case_id)
            image, label = read_case(case, spacing_tolerance=pipeline.spec.input.spacing_tolerance)
            if label is None:
                raise InputError(f"case '{case_id}': no label; the post-processing choice needs a reference per case")
            path, reference = out_dir / f"{case_id}.nii.gz", out_dir / f"{case_id}_reference.nii.gz"
            measured: dict[str, Any] = {}
            write(predictor.predict_preprocessed(image, predictor.run_preprocess(image), measurements=measured), path)
            write(label, reference)
            source = input_description(image.meta, image.spacing, image.spatial_shape, image.orientation)
            qc = assess(measured, source, summary, labels=pipeline.labels, channels=list(pipeline.spec.input.channels))
            record = {
                "fold": k,
                "qc_score": qc.score,
                "features": qc.features(),
                "measured": measured,
                "source": source,
            }
            write_text_atomic(out_dir / f"{case_id}.qc.json", json.dumps(record, default=float))
            out[case_id] = (path, reference)
    return out


def choose(
    cases: dict[str, tuple[Path, Path]],
    trials: list[tuple[dict[str, Any], tuple[int, ...], str]],
    labels: Sequence[int],
) -> tuple[list[dict[str, Any]], dict[int, float], dict[int, float], list[Trial]]:
    """The greedy choice over the out-of-fold predictions (see the module docstring).

    Cases are read from disk for every candidate (one case in memory at a time), so the
    memory does not grow with the dataset.
    """

    def mean_dice(steps: list[dict[str, Any]], judged: Sequence[int]) -> dict[int, float]:
        scores = []
        for pred_path, ref_path in cases.values():
            pred = _apply(steps, read(pred_path).replace(kind="label"))
            scores.append(_dice(np.asarray(pred.numpy())[0], np.asarray(read(ref_path).numpy())[0], judged))
        return {k: float(np.mean([s[k] for s in scores])) for k in judged}

    kept: list[dict[str, Any]] = []
    baseline = mean_dice([], labels)
    current = dict(baseline)
    results: list[Trial] = []
    for i, (step, judged, rule) in enumerate(trials):
        after = mean_dice([*kept, step], judged)
        before = {k: current[k] for k in judged}
        if i == 0:  # the whole-foreground step: mean up, no label down
            ok = np.mean(list(after.values())) > np.mean(list(before.values())) and all(
                after[k] >= before[k] for k in judged
            )
        else:
            ok = all(after[k] > before[k] for k in judged)
        results.append(Trial(step, judged, before, after, bool(ok), rule))
        if ok:
            kept.append(step)
            current.update(after)
    return _merge(kept), baseline, current, results


def _merge(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-label keep-largest and hole-filling steps of the same kind become one step with a label list."""
    out: list[dict[str, Any]] = []
    for step in steps:
        ((name, opts),) = step.items()
        prev = out[-1] if out else None
        if prev is not None and name in ("keep_largest_component", "fill_holes") and name in prev:
            p = prev[name]
            same = {k: v for k, v in p.items() if k != "labels"} == {k: v for k, v in opts.items() if k != "labels"}
            if same and p.get("labels") and opts.get("labels"):
                p["labels"] = sorted({*p["labels"], *opts["labels"]})
                continue
        out.append({name: dict(opts)})
    return out


def _update_checkpoint(path: Path, postprocess: list[dict[str, Any]], calibration: dict[str, Any]) -> None:
    """Rewrite the ``postprocess`` section of a checkpoint's pipeline config and add the QC calibration to its
    training summary (atomically, weights untouched)."""
    from medseg.training import load_checkpoint
    from medseg.training.checkpoint import set_training_summary, update_config

    update_config(path, postprocess=postprocess)
    summary = load_checkpoint(path).training_summary
    set_training_summary(path, {**summary, "calibration": calibration})


def _write_final(
    run_dir: Path, pipeline: Pipeline, choice: PostprocessChoice, n_folds: int, names: dict[int, str]
) -> Path:
    import yaml

    from medseg.pipeline import Pipeline

    config = pipeline.to_dict()
    config["postprocess"] = choice.steps
    config["inference"]["checkpoints"] = [f"fold_{k}/best.pt" for k in range(n_folds)]
    path = run_dir / "final_pipeline.yaml"
    Pipeline.from_dict(config, source=path)  # must load as written
    lines = [
        f"# The trained pipeline: the {n_folds} folds as an ensemble, post-processing chosen on the out-of-fold",
        f"# predictions of {choice.cases} cases (medseg.planning.postprocessing, after nnU-Net determine_postprocessing).",
        "# mean Dice per label before → after each candidate (kept ones applied in order):",
    ]
    for t in choice.trials:
        scores = ", ".join(f"{names.get(k, k)} {t.before[k]:.4f} → {t.after[k]:.4f}" for k in t.labels)
        lines.append(f"#   {'KEPT ' if t.kept else 'no   '} {json.dumps(t.step)}: {scores}")
    final = ", ".join(f"{names.get(k, k)} {choice.baseline[k]:.4f} → {choice.final[k]:.4f}" for k in choice.final)
    lines.append(f"# result: {final}")
    write_text_atomic(path, "\n".join(lines) + "\n" + yaml.safe_dump(config, sort_keys=False))
    return path


def determine_postprocessing(
    run_dir: str | os.PathLike[str],
    data: str | os.PathLike[str] | Dataset,
    pipeline: Pipeline,
    *,
    n_folds: int = 5,
    device: str = "auto",
) -> PostprocessChoice:
    """Choose post-processing from the cross-validation of every fold in ``run_dir``.

    Args:
        run_dir: the run folder of ``medseg train --fold all`` (``splits.json``, ``fold_K/best.pt``).
        data: the training dataset (its labels are the references, read with the pipeline's
            ROI→label mapping, ``input.labels``).
        pipeline: the pipeline the folds were trained with.
        n_folds: number of folds.
        device: where the out-of-fold predictions run.

    Returns:
        The choice; also written to ``final_pipeline.yaml``, ``postprocessing.json`` and each fold's ``best.pt``.

    Raises:
        ConfigError: folds missing or not matching ``splits.json``.
    """
    from medseg.training.dataset import Dataset, load_dataset

    root = Path(run_dir)
    dataset = data if isinstance(data, Dataset) else load_dataset(data, labels=pipeline.label_synonyms)
    cases = out_of_fold_predictions(root, dataset, pipeline, n_folds, device)
    if not cases:
        raise InputError(f"{root}: no out-of-fold predictions")
    labels = sorted(pipeline.labels)
    steps, baseline, final, trials = choose(cases, candidates(pipeline), labels)
    choice = PostprocessChoice(steps, baseline, final, trials, cases=len(cases))
    choice.pipeline_path = _write_final(root, pipeline, choice, n_folds, pipeline.labels)
    record = {
        "steps": steps,
        "cases": len(cases),
        "baseline_dice": {str(k): v for k, v in baseline.items()},
        "final_dice": {str(k): v for k, v in final.items()},
        "trials": [
            {
                "step": t.step,
                "labels": list(t.labels),
                "before": {str(k): v for k, v in t.before.items()},
                "after": {str(k): v for k, v in t.after.items()},
                "kept": t.kept,
                "rule": t.rule,
            }
            for t in trials
        ],
    }
    calibration = _calibrate(cases, steps, pipeline, root)
    record["qc_calibration"] = calibration
    write_text_atomic(root / "postprocessing.json", json.dumps(record, indent=1))
    for k in range(n_folds):
        _update_checkpoint(root / f"fold_{k}" / "best.pt", steps, calibration)
    return choice


def _calibrate(
    cases: dict[str, tuple[Path, Path]], steps: list[dict[str, Any]], pipeline: Pipeline, run_dir: Path
) -> dict[str, Any]:
    """The QC calibration (:func:`medseg.qc.calibration.calibrate_out_of_fold`) on the out-of-fold predictions:
    their QC measurements (``CASE.qc.json``) and their Dice per label after the chosen post-processing."""
    from medseg.qc.calibration import calibrate_out_of_fold
    from medseg.training import load_checkpoint

    labels = sorted(pipeline.labels)
    records, dice = [], []
    for case_id, (pred_path, ref_path) in cases.items():
        records.append(json.loads((pred_path.parent / f"{case_id}.qc.json").read_text()))
        pred = np.asarray(_apply(steps, read(pred_path).replace(kind="label")).numpy())[0]
        ref = np.asarray(read(ref_path).numpy())[0]
        found = _dice(pred, ref, labels)
        absent = {k for k in labels if not (pred == k).any() and not (ref == k).any()}
        dice.append({str(k): (float("nan") if k in absent else v) for k, v in found.items()})
    folds = sorted({int(r.get("fold", 0)) for r in records})
    summaries = {k: load_checkpoint(run_dir / f"fold_{k}" / "best.pt").training_summary or {} for k in folds}
    return calibrate_out_of_fold(
        records, dice, summaries, labels=pipeline.labels, channels=list(pipeline.spec.input.channels)
    )
