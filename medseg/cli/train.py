"""``medseg train PIPELINE --data DIR [--fold K]``: train the pipeline's network."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medseg.cli.main import app


def parse_duration(text: str, option: str) -> float:
    """``"90m"`` → 5400.0 s; ``"2h"``, ``"1.5h"``, ``"45s"``, ``"3600"`` (seconds) likewise.

    Raises:
        ConfigError: not a positive duration (names ``option``).
    """
    import re

    from medseg.errors import ConfigError

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d)?\s*", str(text).lower())
    if m is None or float(m.group(1)) <= 0:
        raise ConfigError(f"{option}: expected a positive duration such as 90m, 2h or 3600 (seconds), got {text!r}")
    factor = {"s": 1, "sec": 1, None: 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}[m.group(2)]
    return float(m.group(1)) * factor


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
    max_time: str = typer.Option(
        None,
        "--max-time",
        help="Wall-clock budget, e.g. 90m, 2h, 3600 (s): sets training.max_time_s; the "
        "learning-rate schedule then runs over the budget.",
    ),
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue from last.pt when it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train (one fold, or all cases) and write best/last checkpoints, CSV log and curve."""
    from medseg.pipeline import Pipeline

    if device is not None:
        from medseg.core.device import resolve_device

        resolve_device(device, option="--device")  # a device this machine lacks fails here, named as typed
    p = Pipeline.from_yaml(pipeline)
    budget = parse_duration(max_time, "--max-time") if max_time is not None else None
    overrides = {
        k: v for k, v in {"device": device, "max_epochs": max_epochs, "max_time_s": budget}.items() if v is not None
    }
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
