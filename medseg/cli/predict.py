"""``medseg predict PIPELINE|CHECKPOINT -i IN -o OUT``: segment a file, a DICOM folder or a batch.

Every run goes through the batch engine, so one case and ten thousand behave the same:
outputs are written atomically, each case gets a provenance sidecar, finished cases
are skipped on a re-run, and a failing case never stops the others. Every option is
checked before the first case starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medseg.cli.main import EXPORTER_NAMES, app
from medseg.errors import ConfigError

if TYPE_CHECKING:
    from medseg.batch import BatchReport
    from medseg.pipeline import Pipeline

#: Shown in ``--help``; a test checks it names every registered exporter.
EXPORT_HELP = (
    f"Exporters, repeatable or comma-separated (default: the pipeline's export list): {EXPORTER_NAMES} "
    "(snake_case spellings such as seg_nrrd work too)."
)


def load_pipeline_and_checkpoints(target: Path, checkpoints: list[Path] | None) -> tuple[Pipeline, list[Path]]:
    """``target`` is a pipeline YAML (checkpoints from it or ``--checkpoint``), a checkpoint file, a model
    package (``.zip``), an installed model's name or a shipped pipeline's name (see
    :func:`medseg.models.targets.resolve_target`)."""
    from medseg.models.targets import check_checkpoints_exist, resolve_target
    from medseg.pipeline import Pipeline

    target = resolve_target(target)
    if target.suffix.lower() in (".pt", ".pth", ".ckpt"):
        from medseg.training import load_checkpoint

        ckpt = load_checkpoint(target)
        if not ckpt.config:
            raise ConfigError(
                f"{target}: checkpoint carries no pipeline config; give the pipeline file and --checkpoint"
            )
        pipeline = Pipeline.from_dict(ckpt.config, source=target)
        return pipeline, [target, *(checkpoints or [])]
    pipeline = Pipeline.from_yaml(target)
    if checkpoints:
        return pipeline, list(checkpoints)
    check_checkpoints_exist(target, pipeline.checkpoint_paths())
    return pipeline, pipeline.checkpoint_paths()


def split_list(values: list[str] | None) -> list[str] | None:
    """``["nifti,stl", "png"]`` → ``["nifti", "stl", "png"]`` (None stays None)."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@app.command()
def predict(
    target: Path = typer.Argument(
        ...,
        help="Pipeline file (YAML), checkpoint (.pt) carrying its pipeline, model package (.zip), installed model "
        "name, or shipped pipeline name (e.g. brain_extraction).",
    ),
    input: Path = typer.Option(
        ..., "-i", "--input", help="Image file, DICOM folder, folder of cases, or .csv manifest."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    checkpoint: list[Path] = typer.Option(None, "--checkpoint", "-c", help="Checkpoint(s); several = fold ensemble."),
    device: str = typer.Option("auto", "--device", "-d", help="auto, cpu, cuda, cuda:1 (gpu = cuda), mps."),
    tta: bool = typer.Option(
        None, "--tta/--no-tta", help="Mirroring test-time augmentation (default: the pipeline's)."
    ),
    precision: str = typer.Option(
        None,
        "--precision",
        help="Network arithmetic: auto (bfloat16 where the CPU/GPU has it natively), float32, bfloat16, float16 "
        "(default: the pipeline's inference.precision).",
    ),
    series: str = typer.Option(None, "--series", help="SeriesInstanceUID when a DICOM folder holds several series."),
    spacing_tolerance: float = typer.Option(
        None,
        "--spacing-tolerance",
        help="DICOM: allowed deviation of slice gaps (fraction; default input.spacing_tolerance).",
    ),
    export: list[str] = typer.Option(None, "--export", "-e", help=EXPORT_HELP),
    executor: str = typer.Option("inprocess", "--executor", help="inprocess, overlap (prefetch next cases) or dask."),
    workers: int = typer.Option(None, "--workers", help="Loader threads (overlap) or Dask LocalCluster workers."),
    scheduler: str = typer.Option(None, "--scheduler", help="Existing Dask scheduler, e.g. tcp://host:8786."),
    num_parts: int = typer.Option(1, "--num-parts", help="Split the batch into K parts (SLURM arrays)..."),
    part_id: int = typer.Option(0, "--part-id", help="...and run part I (0-based)."),
    force: bool = typer.Option(False, "--force", help="Re-run cases already done."),
    as_json: bool = typer.Option(False, "--json", help="Print the run report as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="One line per finished case."),
) -> None:
    """Segment every case of INPUT with the pipeline; write masks and exports to OUTPUT."""
    from medseg.batch import EXECUTORS, discover_cases, run_batch, select_part
    from medseg.core.device import resolve_device
    from medseg.errors import did_you_mean
    from medseg.pipeline.processor import PipelineProcessor

    # every option is checked here, before any case runs
    if executor not in EXECUTORS:
        raise ConfigError(
            f"--executor: unknown '{executor}'{did_you_mean(executor, EXECUTORS)}; use {', '.join(EXECUTORS)}"
        )
    select_part([], num_parts, part_id)
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if device != "auto":
        resolve_device(device, option="--device")
    if precision is not None:
        from medseg.core.precision import PRECISIONS

        if precision not in PRECISIONS:
            raise ConfigError(f"--precision: unknown '{precision}'{did_you_mean(precision, PRECISIONS)}")
    if spacing_tolerance is not None and not spacing_tolerance > 0:
        raise ConfigError(f"--spacing-tolerance must be a positive fraction such as 0.1, got {spacing_tolerance}")
    pipeline, ckpts = load_pipeline_and_checkpoints(target, checkpoint)
    cases = discover_cases(input, series=series)
    processor = PipelineProcessor(
        pipeline,
        ckpts,
        device=device,
        tta=tta,
        series_uid=series,
        exporters=split_list(export),
        spacing_tolerance=spacing_tolerance,
        precision=precision,
    )
    if executor != "dask":
        processor.predictor  # noqa: B018  (load the networks now: checkpoint problems stop the run before any case)
    report = run_batch(
        cases,
        processor,
        output,
        executor=executor,  # type: ignore[arg-type]
        workers=workers,
        scheduler=scheduler,
        force=force,
        num_parts=num_parts,
        part_id=part_id,
        progress=not quiet,
        verbose=verbose,
    )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print_summary(report, output)
    raise typer.Exit(report.exit_code)


def print_summary(report: BatchReport, output: Path) -> None:
    """The run's summary line, then failures, per-case warnings and input files not read (stderr)."""
    import sys

    typer.echo(
        f"{report.succeeded} succeeded, {report.skipped} skipped, {report.failed} failed "
        f"in {report.seconds:.1f} s → {output}"
    )
    sys.stdout.flush()  # before the details on stderr, so the two streams read in order
    for row in report.rows:
        if row.status == "failed":
            typer.secho(f"  {row.case_id}: {row.error}", fg=typer.colors.RED, err=True)
    for row in report.warned:
        for warning in row.warnings:
            category, _, text = warning.partition(": ")
            text = text if category.endswith("Warning") else warning
            text = text if text.startswith(f"{row.case_id}:") else f"{row.case_id}: {text}"
            typer.secho(f"  warning: {text}", fg=typer.colors.YELLOW, err=True)
    for path, why in report.skipped_inputs:
        typer.secho(f"  not read: {path}: {why}", fg=typer.colors.YELLOW, err=True)
    if report.warned or report.skipped_inputs or report.failed:
        typer.echo(f"  details: {report.files.get('html', output / 'report.html')}", err=True)
