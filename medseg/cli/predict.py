"""``medseg predict PIPELINE|CHECKPOINT -i IN -o OUT``: segment a file, a DICOM folder or a batch.

Every run goes through the batch engine, so one case and ten thousand behave the same:
outputs are written atomically, each case gets a provenance sidecar, finished cases
are skipped on a re-run, and a failing case never stops the others.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer

from medseg.cli.main import app
from medseg.errors import ConfigError, InputError


def inputs_to_cases(source: Path, series: str | None = None) -> list:
    """Cases for ``-i``: one image file, a DICOM file/folder, a folder of cases or a CSV manifest."""
    from medseg.batch import Case, discover_cases, sanitize_case_id
    from medseg.io import image_suffix, is_dicom_file

    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    if source.is_file() and source.suffix.lower() != ".csv":
        if not image_suffix(source) and not is_dicom_file(source):
            raise InputError(f"{source}: not an image file, DICOM file, folder or .csv manifest")
        stem = source.name[: -len(image_suffix(source))] if image_suffix(source) else source.stem
        stem = re.sub(r"_\d{4}$", "", stem)
        extra = {"series_uid": series} if series else {}
        return [Case(sanitize_case_id(stem), (source,), extra=extra)]
    return discover_cases(source, series=series)


def load_pipeline_and_checkpoints(target: Path, checkpoints: list[Path] | None):
    """``target`` is a pipeline YAML (checkpoints from it or ``--checkpoint``) or a checkpoint file."""
    from medseg.pipeline import Pipeline

    if not target.exists():
        raise ConfigError(f"{target}: no such pipeline or checkpoint file")
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
    return pipeline, list(checkpoints) if checkpoints else pipeline.checkpoint_paths()


@app.command()
def predict(
    target: Path = typer.Argument(..., help="Pipeline file (YAML) or a checkpoint (.pt) carrying its pipeline."),
    input: Path = typer.Option(
        ..., "-i", "--input", help="Image file, DICOM folder, folder of cases, or .csv manifest."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    checkpoint: list[Path] = typer.Option(None, "--checkpoint", "-c", help="Checkpoint(s); several = fold ensemble."),
    device: str = typer.Option("auto", "--device", "-d", help="auto, cpu, cuda, cuda:1, ..."),
    tta: bool = typer.Option(
        None, "--tta/--no-tta", help="Mirroring test-time augmentation (default: the pipeline's)."
    ),
    series: str = typer.Option(None, "--series", help="SeriesInstanceUID when a DICOM folder holds several series."),
    export: list[str] = typer.Option(None, "--export", "-e", help="Exporters (default: the pipeline's export list)."),
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
    from medseg.batch import run_batch
    from medseg.pipeline.predict import PipelineProcessor

    if executor not in ("inprocess", "overlap", "dask"):
        raise ConfigError(f"--executor must be inprocess, overlap or dask, got '{executor}'")
    pipeline, ckpts = load_pipeline_and_checkpoints(target, checkpoint)
    cases = inputs_to_cases(input, series)
    processor = PipelineProcessor(pipeline, ckpts, device=device, tta=tta, series_uid=series, exporters=export or None)
    if executor != "dask":
        processor.predictor  # noqa: B018  (load the networks now: checkpoint problems stop the run before any case)
    report = run_batch(
        cases,
        processor,
        output,
        executor=executor,
        workers=workers,
        scheduler=scheduler,
        force=force,  # type: ignore[arg-type]
        num_parts=num_parts,
        part_id=part_id,
        progress=not quiet,
        verbose=verbose,
    )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        typer.echo(
            f"{report.succeeded} succeeded, {report.skipped} skipped, {report.failed} failed "
            f"in {report.seconds:.1f} s → {output}"
        )
        for row in report.rows:
            if row.status == "failed":
                typer.secho(f"  {row.case_id}: {row.error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(report.exit_code)
