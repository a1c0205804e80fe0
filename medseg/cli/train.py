"""``medseg train PIPELINE --data DIR [--fold K]``: train the pipeline's network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from medseg.cli.main import app


@app.command()
def train(
    pipeline: Path = typer.Argument(None, help="Pipeline file (YAML); omitted: plan one from --data first."),
    data: Path = typer.Option(
        ...,
        "--data",
        help="nnU-Net/MSD folder (imagesTr, labelsTr), a CSV manifest, or a DICOM export whose image series have "
        "RTSTRUCT/SEG objects (ROI names matched to input.labels).",
    ),
    output: Path = typer.Option(Path("runs"), "-o", "--output", help="Run folder (checkpoints, logs, cache)."),
    fold: str = typer.Option(
        None, "--fold", help="Cross-validation fold to train, or 'all' (default: all cases, no validation)."
    ),
    n_folds: str = typer.Option("5", "--folds", help="Number of folds of the split (splits.json); 'all': train all 5."),
    device: str = typer.Option(None, "--device", "-d", help="auto, cpu, cuda, cuda:1 (default: the pipeline's)."),
    max_epochs: int = typer.Option(
        None, "--epochs", help="Train this many epochs (sets training.max_epochs and drops a training.max_time_s)."
    ),
    max_time: str = typer.Option(
        None,
        "--max-time",
        help="Train for this long, e.g. 90m, 2h, 3600 (s), however many epochs that is (sets training.max_time_s): "
        "longer than a short plan, shorter than a long one; the learning-rate schedule is spread over the time and a "
        "resumed run trains what is left of it.",
    ),
    time_budget: str = typer.Option(
        None,
        "--time-budget",
        help="Without a pipeline: plan a network and schedule for this time per fold (e.g. 2h), then train for it.",
    ),
    labels: Path = typer.Option(
        None,
        "--labels",
        help="Without a pipeline: "
        + "YAML naming the ROIs of an RTSTRUCT/SEG export: label value → ROI name or [name, synonym, 'PATTERN*'] "
        "(as for 'medseg dataset convert'; a pipeline file works too).",
    ),
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue from last.pt when it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train (one fold, every fold, or all cases) and write best/last checkpoints, CSV log and curve.

    With every fold (``--fold all``), the out-of-fold predictions then choose the post-processing
    (``final_pipeline.yaml``). Without a pipeline file, ``medseg plan`` runs first into the run folder.
    """
    from medseg.pipeline import Pipeline

    if device is not None:
        from medseg.core.device import resolve_device

        resolve_device(device, option="--device")  # a device this machine lacks fails here, named as typed
    folds, n = _folds(fold, n_folds)
    if pipeline is not None and time_budget is not None:
        from medseg.errors import ConfigError

        raise ConfigError(
            "--time-budget plans a new pipeline: omit PIPELINE, or give this pipeline a budget with --max-time"
        )
    if pipeline is not None and labels is not None:
        from medseg.errors import ConfigError

        raise ConfigError(
            f"{pipeline}: --labels names the ROIs for a planned pipeline; with a pipeline file, write them into its "
            "input.labels (e.g. labels: {1: [liver, Liver, 'LIVER*']})"
        )
    if pipeline is None:
        pipeline = _plan_first(data, output, device, time_budget, n if folds != [None] else 0, labels)
    p = Pipeline.from_yaml(pipeline)
    from medseg.planning.workflow import parse_duration

    if max_epochs is not None and max_time is not None:
        from medseg.errors import ConfigError

        raise ConfigError("--epochs N trains N epochs and --max-time trains for a time; give one of them")
    budget = parse_duration(max_time, "--max-time") if max_time is not None else None
    overrides: dict[str, object] = {
        k: v for k, v in {"device": device, "max_epochs": max_epochs, "max_time_s": budget}.items() if v is not None
    }
    if max_epochs is not None:
        overrides["max_time_s"] = None  # --epochs N trains N epochs, even where the pipeline has a time budget
    planned = {**p.training_config.to_dict(), **overrides}
    for k in folds:
        result = p.train(data, output, fold=k, n_folds=n, resume=resume, **overrides)
        _exit_if_interrupted(result, None if planned["max_time_s"] is not None else int(planned["max_epochs"]))
    if len(folds) > 1:
        from medseg.planning.postprocessing import determine_postprocessing

        chosen = determine_postprocessing(output, data, p, n_folds=n, device=device or "auto")
        typer.echo(f"{'postprocess':16s} {chosen.summary()} → {chosen.pipeline_path}")
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


def _exit_if_interrupted(result: Any, max_epochs: int | None) -> None:
    """After a fold stopped by SIGINT/SIGTERM: one line saying what was kept, and exit 130/143."""
    from medseg.batch.signals import EXIT_CODES
    from medseg.training.session import interrupted_line

    if result.stopped_by in EXIT_CODES:
        typer.secho(interrupted_line(result.stopped_by, result.epochs, max_epochs), fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(EXIT_CODES[result.stopped_by])


def _folds(fold: str | None, n_folds: str) -> tuple[list[int | None], int]:
    """``--fold`` / ``--folds`` → the folds to train and the number of folds."""
    from medseg.errors import ConfigError

    every = n_folds == "all" or fold == "all"
    try:
        n = 5 if n_folds == "all" else int(n_folds)
        if every:
            return list(range(n)), n
        return [None if fold is None else int(fold)], n
    except ValueError:
        raise ConfigError(
            f"--fold takes a fold number or 'all', --folds a number or 'all'; got {fold!r}, {n_folds!r}"
        ) from None


def _plan_first(
    data: Path, output: Path, device: str | None, time_budget: str | None, n_folds: int, labels: Path | None
) -> Path:
    """Plan into the run folder (once: a plan already there is reused, so resuming trains the same network)."""
    planned = output / "pipeline.yaml"
    if planned.exists():
        typer.echo(f"{'plan':16s} {planned} (planned earlier, reused)")
        return planned
    from medseg.cli.dataset import load_label_names
    from medseg.cli.plan import plan_options
    from medseg.planning.workflow import plan_dataset

    names = load_label_names(labels) if labels is not None else None
    options = plan_options(device or "auto", None, time_budget, None, None, n_folds)
    files = plan_dataset(data, output, options, labels=names)  # type: ignore[arg-type]
    typer.echo(f"{'plan':16s} {files.pipeline}")
    return files.pipeline
