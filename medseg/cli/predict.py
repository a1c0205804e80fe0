"""``medseg predict PIPELINE|CHECKPOINT -i IN -o OUT``: segment a file, a DICOM folder or a batch.

Every run goes through the batch engine, so one case and ten thousand behave the same:
outputs are written atomically, each case gets a provenance sidecar, finished cases
are skipped on a re-run, and a failing case never stops the others. Every option is
checked before the first case starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from medseg.cli.main import EXPORTER_NAMES, app
from medseg.errors import ConfigError

if TYPE_CHECKING:
    from medseg.batch import BatchReport, Case
    from medseg.export import Exporter
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
    input: str = typer.Option(
        ...,
        "-i",
        "--input",
        help="Image file, DICOM folder, folder of cases, .csv manifest, or an archive: "
        "dicomweb+http(s)://HOST:PORT/PATH or dimse://AET@HOST:PORT.",
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
    series: str = typer.Option(
        None,
        "--series",
        help="SeriesInstanceUID when a DICOM folder holds several series, or to fetch from an archive.",
    ),
    case_ids: str = typer.Option(
        None,
        "--case-ids",
        help="How DICOM cases are named: patient (PatientID, plus study date and series number when a patient has "
        "several series; the default for folders), series (always all three) or folder (the folder's name; the "
        "default for archives, whose cases are named by SeriesInstanceUID).",
    ),
    study: str = typer.Option(None, "--study", help="Archive input: fetch the series of this StudyInstanceUID."),
    filters: list[str] = typer.Option(
        None,
        "--filter",
        help="Archive input: KEYWORD=VALUE on study/series attributes, repeatable (e.g. Modality=CT, "
        "StudyDate=20240101-20241231).",
    ),
    cache: Path = typer.Option(None, "--cache", help="Archive input: folder of fetched series (default OUT/.archive)."),
    send: str = typer.Option(
        None, "--send", help="Store DICOM outputs (dicom-seg, rtstruct) in this archive (same URL forms as -i)."
    ),
    ae: str = typer.Option("MEDSEG", "--ae", help="medseg's calling AE title for dimse:// archives."),
    tls_cert: Path = typer.Option(None, "--tls-cert", help="DIMSE over TLS: medseg's certificate (PEM)."),
    tls_key: Path = typer.Option(None, "--tls-key", help="DIMSE over TLS: its private key (PEM)."),
    tls_ca: Path = typer.Option(None, "--tls-ca", help="DIMSE over TLS: CA certificates that sign the archive's."),
    dicom_source: Path = typer.Option(
        None,
        "--dicom-source",
        help="DICOM series that dicom-seg/rtstruct outputs reference when the inputs are not DICOM (one case).",
    ),
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
    qc_threshold: float = typer.Option(
        0.5,
        "--qc-threshold",
        help="Cases whose qc_score (0: like the training cases, 1: certainly needs review) is at least this are "
        "counted as needing review and marked in report.html; nothing is hidden or deleted.",
    ),
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
    if not 0.0 <= qc_threshold <= 1.0:
        raise ConfigError(f"--qc-threshold must be between 0 and 1, got {qc_threshold}")
    if spacing_tolerance is not None and not spacing_tolerance > 0:
        raise ConfigError(f"--spacing-tolerance must be a positive fraction such as 0.1, got {spacing_tolerance}")
    from medseg.cli.archive import ArchiveOptions

    archive_opts = ArchiveOptions.check(input, send, filters, study, series, ae, (tls_cert, tls_key, tls_ca))
    pipeline, ckpts = load_pipeline_and_checkpoints(target, checkpoint)
    exporters = split_list(export)
    if dicom_source is not None:
        specs = exporters or [{e.name: e.options()} for e in pipeline.exporters] or ["nifti"]
        exporters = with_dicom_source(specs, dicom_source)
    processor = PipelineProcessor(
        pipeline,
        ckpts,
        device=device,
        tta=tta,
        series_uid=series,
        exporters=exporters,
        spacing_tolerance=spacing_tolerance,
        precision=precision,
    )
    archive_opts.check_exports(processor.export_specs())
    if archive_opts.source is None:
        cases = discover_cases(Path(input), series=series, case_ids=case_ids or "patient")
        check_dicom_exports(processor.export_specs(), cases, num_parts, part_id)
    check_writable(output)
    fetcher = None
    batch_processor: Any = processor
    if archive_opts.source is not None:  # every option is checked: fetch the series (cases of an archive are DICOM)
        cases, fetcher = archive_opts.fetch(
            cache or output / ".archive", case_ids or "folder", prefetch=executor != "dask", part=(part_id, num_parts)
        )
        if fetcher is not None:
            from medseg.archive.fetch import FetchingProcessor

            batch_processor = FetchingProcessor(processor, fetcher)
    if executor != "dask":
        processor.predictor  # noqa: B018  (load the networks now: checkpoint problems stop the run before any case)
    try:
        report = run_batch(
            cases,
            batch_processor,
            output,
            executor=executor,  # type: ignore[arg-type]
            workers=workers,
            scheduler=scheduler,
            force=force,
            num_parts=num_parts,
            part_id=part_id,
            progress=not quiet,
            verbose=verbose,
            qc_threshold=qc_threshold,
        )
    finally:
        if fetcher is not None:
            fetcher.close()
    if archive_opts.send is not None and not report.interrupted:
        report = archive_opts.send_results(report, output, num_parts, part_id)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print_summary(report, output)
    if report.interrupted:
        typer.secho(
            f"interrupted after {len(report.rows)} of {report.planned} cases; re-run the same command to continue",
            fg=typer.colors.YELLOW,
            err=True,
        )
    raise typer.Exit(report.exit_code)


def with_dicom_source(specs: list[Any], dicom_source: Path) -> list[Any]:
    """``specs`` with ``source_series: DICOM_SOURCE`` given to the dicom-seg and rtstruct exporters."""
    from medseg.export import exporter_name

    if not dicom_source.exists():
        raise ConfigError(f"--dicom-source {dicom_source}: no such DICOM folder")
    out: list[Any] = []
    for spec in specs:
        name, options = (spec, {}) if isinstance(spec, str) else next(iter(dict(spec).items()))
        if exporter_name(str(name)) in ("dicom_seg", "rtstruct"):
            out.append({name: {**(options or {}), "source_series": str(dicom_source)}})
        else:
            out.append(spec)
    return out


def check_dicom_exports(exporters: list[Exporter], cases: list[Case], num_parts: int = 1, part_id: int = 0) -> None:
    """Before any case runs: dicom-seg/rtstruct need DICOM inputs (or a ``source_series``).

    Raises:
        ConfigError: such an exporter has no source series and some case was not read from DICOM
            (the cases are named, with the option that fixes it).
    """
    from medseg.batch import select_part
    from medseg.io import image_suffix

    needy = [e.name for e in exporters if e.name in ("dicom_seg", "rtstruct") and not e.options().get("source_series")]
    if not needy:
        return
    not_dicom = [c.case_id for c in select_part(cases, num_parts, part_id) if any(image_suffix(p) for p in c.images)]
    if not_dicom:
        shown = ", ".join(not_dicom[:5]) + (f" and {len(not_dicom) - 5} more" if len(not_dicom) > 5 else "")
        raise ConfigError(
            f"-e {', '.join(needy)}: DICOM outputs reference the DICOM series a case was read from, but {shown} "
            f"{'is' if len(not_dicom) == 1 else 'are'} not DICOM; predict from the DICOM series, give the series "
            "with --dicom-source DIR (one case), or drop these exporters"
        )


def check_writable(output: Path) -> None:
    """Before any case runs: the output folder can be created and written (a probe file is made and removed).

    Raises:
        OutputError: it cannot (read-only, immutable, no space, a file in the way), with the reason.
    """
    import tempfile

    from medseg.errors import OutputError

    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output, prefix=".medseg-write-probe-"):
            pass
    except OSError as exc:
        raise OutputError(
            f"{output}: the output folder cannot be written ({exc.strerror or exc}); choose another -o/--output "
            "or fix its permissions"
        ) from exc


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
    scored, review = report.ranked(), report.needs_review()
    if scored:
        typer.echo(
            f"{len(review)} of {len(scored)} cases need review (qc_score ≥ {report.qc_threshold:g}); ranked in "
            f"{report.files.get('html', output / 'report.html')}"
        )
        for row in review[:10]:
            first = row.qc_flags[0] if row.qc_flags else ""
            typer.secho(
                f"  review {row.case_id} (qc_score {row.qc_score:.2f}): {first}", fg=typer.colors.YELLOW, err=True
            )
        if len(review) > 10:
            typer.secho(f"  ... and {len(review) - 10} more", fg=typer.colors.YELLOW, err=True)
    if report.warned or report.skipped_inputs or report.failed or review:
        typer.echo(f"  details: {report.files.get('html', output / 'report.html')}", err=True)
