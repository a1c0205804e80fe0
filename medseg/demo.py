"""The demo: the whole chain on ``sample_data/`` in a few minutes on a laptop CPU.

1. Read the Colin27 T1 (NIfTI) with its brain mask, and the real 20-slice MR DICOM series.
2. Write a one-case training set (nnU-Net layout) and a held-out copy of Colin27 on
   another grid (LPS, 1.3×1.1×1.6 mm, altered contrast and noise) with its reference mask.
   Both are the SAME subject: the held-out Dice checks the pipeline end to end (grids,
   inversion, post-processing), not how a model generalises to new people.
3. Load the checkpoint shipped in ``sample_data/checkpoints`` (made by ``medseg demo --train``),
   or train one briefly with ``--train``.
4. Predict both cases through the batch engine (provenance, atomic outputs), post-process,
   export mask, mesh, preview and statistics, and evaluate Dice on the held-out case.
5. With the ``deepbet`` extra installed, also run its pretrained two-stage brain extraction
   (``pipelines/brain_extraction.yaml``) on the held-out case and report its Dice; without it,
   say how to add it.

The sample data and pipelines come from the installed package (a wheel carries them) or the
source checkout.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import medseg
from medseg.core.volume import Volume
from medseg.errors import InputError

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
SHIPPED_CHECKPOINT = Path("checkpoints/brain_mask_mr.pt")


@dataclass
class DemoResult:
    """What the demo produced: output files per case, Dice, timings (s)."""

    out_dir: Path
    checkpoint: Path
    trained: bool
    outputs: dict[str, dict[str, Path]] = field(default_factory=dict)
    dice: dict[str, float] = field(default_factory=dict)
    volumes_ml: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    qc: dict[str, tuple[float | None, tuple[str, ...]]] = field(default_factory=dict)


def heldout_copy(t1: Volume, mask: Volume) -> tuple[Volume, Volume]:
    """Colin27 on another grid (LPS, anisotropic), with changed contrast and noise."""
    from medseg.transforms import Reorient, Resample

    spacing = (1.3, 1.1, 1.6)
    img = Resample(spacing=spacing)(Reorient(axcodes="LPS")(t1.replace(array=t1.numpy().astype(np.float32))))
    ref = Resample(spacing=spacing)(Reorient(axcodes="LPS")(mask))
    rng = np.random.default_rng(7)
    a = img.numpy()
    a = 255.0 * (np.clip(a, 0, None) / 255.0) ** 0.8 + rng.normal(0, 4.0, a.shape).astype(np.float32)
    meta = {"source": "colin27 held-out copy"}
    return (
        Volume(a.astype(np.float32), img.affine, kind="intensity", meta=meta),
        Volume(ref.numpy().astype(np.uint8), ref.affine, kind="label", meta=meta),
    )


def prepare(sample: Path, out: Path) -> dict[str, Any]:
    """Read the sample data and write the training set and held-out case; returns paths."""
    t1 = medseg.read(sample / "colin27" / "ch2.nii.gz")
    bet = medseg.read(sample / "colin27" / "ch2bet.nii.gz")
    t1.require_grid(bet, "brain mask")
    mask = Volume((bet.numpy() > 0).astype(np.uint8), bet.affine, kind="label")
    dicom = medseg.read(sample / "mr_dicom")
    log.info("read %s: %s", "colin27/ch2.nii.gz", t1)
    log.info("read %s: %s", "mr_dicom/", dicom)
    ds = out / "dataset"
    medseg.write(t1, ds / "imagesTr" / "colin27_0000.nii.gz")
    medseg.write(mask, ds / "labelsTr" / "colin27.nii.gz")
    medseg.io.write_text_atomic(
        ds / "dataset.json",
        json.dumps(
            {
                "name": "Colin27BrainMask",
                "channel_names": {"0": "T1"},
                "labels": {"background": 0, "brain": 1},
                "numTraining": 1,
                "file_ending": ".nii.gz",
            },
            indent=2,
        ),
    )
    img, ref = heldout_copy(t1, mask)
    held = medseg.write(img, out / "heldout" / "colin27_lps.nii.gz")
    held_ref = medseg.write(ref, out / "heldout" / "reference" / "colin27_lps.nii.gz")
    return {"dataset": ds, "heldout": held, "heldout_ref": held_ref, "dicom": sample / "mr_dicom"}


def run_demo(
    out: Path,
    *,
    sample: Path | None = None,
    train: bool = False,
    max_epochs: int | None = None,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo into ``out``; ``echo`` receives the human-readable report lines."""
    from medseg.batch import Case, run_batch
    from medseg.metrics import dice
    from medseg.pipeline import Pipeline
    from medseg.pipeline.processor import PipelineProcessor
    from medseg.pipeline.shipped import shipped_folder, shipped_pipeline

    sample = sample or shipped_folder("sample_data") or REPO / "sample_data"
    if not (sample / "colin27" / "ch2.nii.gz").is_file():
        raise InputError(f"{sample}: sample data not found; pass --sample-data with medseg's sample_data folder")
    pipeline = Pipeline.from_yaml(shipped_pipeline("brain_mask_mr") or REPO / "pipelines" / "brain_mask_mr.yaml")
    t0 = time.perf_counter()
    paths = prepare(sample, out)
    seconds = {"prepare": time.perf_counter() - t0}
    echo(f"sample data read; training set in {paths['dataset']}, held-out case {paths['heldout']}")

    checkpoint = sample / SHIPPED_CHECKPOINT
    trained = train or not checkpoint.is_file()
    if trained:
        t0 = time.perf_counter()
        overrides: dict[str, Any] = {"device": "cpu"}
        if max_epochs is not None:
            overrides["max_epochs"] = max_epochs
        echo(
            f"training {pipeline.spec.network.name} on Colin27 ({overrides.get('max_epochs', pipeline.training_config.max_epochs)} epochs)..."
        )
        result = pipeline.train(paths["dataset"], out / "training", fold=None, resume=False, **overrides)
        checkpoint = result.last_checkpoint
        seconds["train"] = time.perf_counter() - t0
        echo(f"trained in {seconds['train']:.0f} s → {checkpoint}")
    else:
        echo(f"using the shipped checkpoint {checkpoint}")

    t0 = time.perf_counter()
    cases = [Case("colin27_lps", (paths["heldout"],)), Case("mr_dicom_pd", (paths["dicom"],))]
    processor = PipelineProcessor(pipeline, [checkpoint], device="cpu", exporters=["nifti", "stl", "png", "stats"])
    report = run_batch(cases, processor, out / "predictions", force=True, progress=False)
    seconds["predict+export"] = time.perf_counter() - t0
    res = DemoResult(out_dir=out, checkpoint=checkpoint, trained=trained, seconds=seconds)
    for row in report.rows:
        if row.status == "failed":
            raise InputError(f"demo case {row.case_id} failed: {row.error}")
        res.outputs[row.case_id] = {k: out / "predictions" / v for k, v in row.outputs.items()}
        res.qc[row.case_id] = (row.qc_score, row.qc_flags)
    for case_id, outputs in res.outputs.items():
        mask_path = next(p for p in outputs.values() if p.name.endswith(".nii.gz"))
        pred = medseg.read(mask_path)
        res.volumes_ml[case_id] = float((pred.numpy() == 1).sum() * pred.voxel_volume_mm3 / 1000.0)
    pred = medseg.read(next(p for p in res.outputs["colin27_lps"].values() if p.name.endswith(".nii.gz")))
    ref = medseg.read(paths["heldout_ref"])
    ref.require_grid(pred, "prediction")
    res.dice["colin27_lps"] = float(dice(pred.numpy()[0], ref.numpy()[0], label=1))
    _report(res, paths, echo)
    _pretrained(res, paths, out, echo)
    return res


def _pretrained(res: DemoResult, paths: dict[str, Any], out: Path, echo: Callable[[str], None]) -> None:
    """With the ``deepbet`` extra: its pretrained brain extraction (``pipelines/brain_extraction.yaml``) on the
    held-out copy, with the Dice against the reference; without it, say how to get it."""
    import importlib.util

    from medseg.batch import Case, run_batch
    from medseg.errors import ConfigError
    from medseg.metrics import dice
    from medseg.pipeline import Pipeline
    from medseg.pipeline.processor import PipelineProcessor
    from medseg.pipeline.shipped import shipped_pipeline

    echo("")
    if importlib.util.find_spec("deepbet") is None:
        echo(
            "pretrained brain extraction: pip install 'medseg[deepbet]' and run the demo again to add deepbet's networks"
        )
        return
    try:
        pipeline = Pipeline.from_yaml(
            shipped_pipeline("brain_extraction") or REPO / "pipelines" / "brain_extraction.yaml"
        )
    except ConfigError as exc:
        echo(f"pretrained brain extraction skipped: {exc}")
        return
    echo(
        "deepbet is installed: pretrained brain extraction (pipelines/brain_extraction.yaml; deepbet, MIT, Fisch et al. 2024)"
    )
    t0 = time.perf_counter()
    processor = PipelineProcessor(pipeline, [], device="cpu", exporters=["nifti", "stats"])
    report = run_batch(
        [Case("colin27_lps", (paths["heldout"],))], processor, out / "pretrained", force=True, progress=False
    )
    res.seconds["deepbet"] = time.perf_counter() - t0
    row = report.rows[0]
    if row.status == "failed":
        raise InputError(f"demo case colin27_lps (deepbet) failed: {row.error}")
    res.outputs["colin27_lps_deepbet"] = {k: out / "pretrained" / v for k, v in row.outputs.items()}
    pred = medseg.read(out / "pretrained" / "colin27_lps.nii.gz")
    ref = medseg.read(paths["heldout_ref"])
    ref.require_grid(pred, "prediction")
    res.dice["colin27_lps_deepbet"] = float(dice(pred.numpy()[0], ref.numpy()[0], label=1))
    echo(
        f"  held-out Colin27 copy: deepbet brain Dice = {res.dice['colin27_lps_deepbet']:.3f} against the BET mask, "
        f"in {res.seconds['deepbet']:.1f} s → {out / 'pretrained' / 'colin27_lps.nii.gz'}"
    )


def _report(res: DemoResult, paths: dict[str, Any], echo: Callable[[str], None]) -> None:
    echo("")
    echo("results")
    echo(
        f"  held-out Colin27 copy (same subject, new grid): brain Dice = {res.dice['colin27_lps']:.3f}, "
        f"volume {res.volumes_ml['colin27_lps']:.0f} mL"
    )
    echo(
        f"  real MR DICOM series (PD-weighted, no reference): predicted brain volume {res.volumes_ml['mr_dicom_pd']:.0f} mL "
        "(the model saw only a T1; treat this as a format/geometry check)"
    )
    echo("quality control (qc_score: 0 = like the training case, 1 = needs review; docs/qc.md)")
    for case_id, (score, flags) in res.qc.items():
        if score is None:
            continue
        verdict = "needs review" if score >= 0.5 else "looks like the training case"
        echo(f"  {case_id}: qc_score {score:.2f}, {verdict}")
        for flag in flags[:3]:
            echo(f"    - {flag}")
    echo("outputs")
    for case_id, outputs in res.outputs.items():
        for name, path in sorted(outputs.items()):
            echo(f"  {case_id:12s} {name:18s} {path}")
    echo("timings " + ", ".join(f"{k} {v:.1f} s" for k, v in res.seconds.items()))
