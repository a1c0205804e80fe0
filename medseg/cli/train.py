"""``medseg train PIPELINE --data DIR [--fold K]``: train the pipeline's network."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medseg.cli.main import app


@app.command()
def train(
    pipeline: Path = typer.Argument(..., help="Pipeline file (YAML)."),
    data: Path = typer.Option(
        ...,
        "--data",
        help="nnU-Net/MSD folder (imagesTr, labelsTr), a CSV manifest, or a DICOM export whose image series have "
        "RTSTRUCT/SEG objects (ROI names matched to input.labels).",
    ),
    output: Path = typer.Option(Path("runs"), "-o", "--output", help="Run folder (checkpoints, logs, cache)."),
    fold: int = typer.Option(
        None, "--fold", help="Cross-validation fold to train (default: all cases, no validation)."
    ),
    n_folds: int = typer.Option(5, "--folds", help="Number of folds of the split (splits.json)."),
    device: str = typer.Option(None, "--device", "-d", help="auto, cpu, cuda, cuda:1 (default: the pipeline's)."),
    max_epochs: int = typer.Option(None, "--epochs", help="Override training.max_epochs."),
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue from last.pt when it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train (one fold, or all cases) and write best/last checkpoints, CSV log and curve."""
    from medseg.pipeline import Pipeline

    p = Pipeline.from_yaml(pipeline)
    overrides = {k: v for k, v in {"device": device, "max_epochs": max_epochs}.items() if v is not None}
    result = p.train(data, output, fold=fold, n_folds=n_folds, resume=resume, **overrides)
    info = {
        "best_checkpoint": str(result.best_checkpoint),
        "last_checkpoint": str(result.last_checkpoint),
        "log_csv": str(result.log_csv),
        "curve_png": str(result.curve_png),
        "epochs": result.epochs,
        "metrics": result.metrics,
    }
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
    else:
        for k, v in info.items():
            typer.echo(f"{k:16s} {v}")
