"""``medseg plan DATA -o OUT``: fingerprint a dataset and write a tuned, self-explaining pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medseg.cli.main import app
from medseg.errors import ConfigError


def plan_options(
    device: str,
    memory_gb: float | None,
    time_budget: str | None,
    modality: str | None,
    config: str | None,
    folds: int = 5,
) -> object:
    """Command-line values → :class:`medseg.planning.planner.PlanOptions` (checked)."""
    from medseg.planning.planner import PlanOptions
    from medseg.planning.workflow import parse_duration

    if config is not None and config not in ("3d", "2d"):
        raise ConfigError(f"--config must be '3d' or '2d', got {config!r}")
    if memory_gb is not None and not memory_gb > 0:
        raise ConfigError(f"--memory-gb must be positive, got {memory_gb}")
    return PlanOptions(
        device=device,
        memory_gb=memory_gb,
        time_budget_s=parse_duration(time_budget) if time_budget is not None else None,
        modality=tuple(m.strip() for m in modality.split(",") if m.strip()) if modality else (),
        config=config,  # type: ignore[arg-type]
        n_folds=folds,
    )


@app.command()
def plan(
    data: Path = typer.Argument(
        ...,
        help="nnU-Net/MSD folder, CSV manifest, folder of DICOM cases or DICOM export with RTSTRUCT/SEG (--labels).",
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for fingerprint.json, pipeline.yaml, plan.json."),
    device: str = typer.Option(
        "auto", "--device", "-d", help="Where training will run and is probed: cpu, cuda, cuda:1."
    ),
    memory_gb: float = typer.Option(None, "--memory-gb", help="Memory for a training step (default: the device's)."),
    time_budget: str = typer.Option(None, "--time-budget", help="Training time of one run: 7200, 2h, 90m, 1h30m."),
    modality: str = typer.Option(None, "--modality", help="CT or MR (or one per channel, comma-separated)."),
    config: str = typer.Option(None, "--config", help="Force the 3d or 2d configuration."),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds (validation cost); 0: all cases, none."),
    labels: Path = typer.Option(
        None,
        "--labels",
        help="YAML naming the ROIs of an RTSTRUCT/SEG export: label value → ROI name or [name, synonym, 'PATTERN*'] "
        "(as for 'medseg dataset convert'; a pipeline file works too).",
    ),
    probe: bool = typer.Option(True, "--probe/--no-probe", help="Measure on the device (off: nnU-Net's estimate)."),
    explain: bool = typer.Option(False, "--explain", help="Print every decision with its rule and numbers."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan record as JSON."),
) -> None:
    """Plan a pipeline for DATA: spacing, normalisation, network, patch, batch, schedule, post-processing."""
    from medseg.cli.dataset import load_label_names
    from medseg.planning.render import explain_table, plan_record
    from medseg.planning.workflow import plan_dataset

    options = plan_options(device, memory_gb, time_budget, modality, config, folds)
    names = load_label_names(labels) if labels is not None else None
    files = plan_dataset(data, output, options, probe=probe, labels=names)  # type: ignore[arg-type]
    result = files.plan
    suspicious = result.fingerprint.flags.get("not_like_declared_modality")
    for line in ([suspicious] if suspicious else []) + result.warnings:
        typer.secho(f"warning: {line}", fg=typer.colors.YELLOW, err=True)
    if as_json:
        typer.echo(json.dumps(plan_record(result), indent=2, default=str))
        return
    if explain:
        typer.echo(explain_table(result))
    conf = result.configurations[result.chosen]
    cache = result.fingerprint.data.get("cache", {})
    typer.echo(
        f"fingerprint  {files.fingerprint} ({cache.get('reused', 0)} cases from cache, {cache.get('analysed', 0)} read)"
    )
    typer.echo(f"pipeline     {files.pipeline}")
    typer.echo(
        f"plan         {result.chosen}, patch {conf.patch}, batch {conf.batch}, {conf.network.topology.n_stages} stages "
        f"{list(conf.network.features)}, {conf.schedule.max_epochs} × {conf.schedule.iterations_per_epoch} iterations"
    )
    if conf.case_text:
        typer.echo(f"predict      {conf.case_text}")
    typer.echo(f"next         medseg train {files.pipeline} --data {data}")
