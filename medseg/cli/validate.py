"""``medseg validate PIPELINE``: check a pipeline file without running anything."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medseg.cli.main import app


@app.command()
def validate(
    pipeline: Path = typer.Argument(
        ..., help="Pipeline file (YAML), model package (.zip), installed model or shipped pipeline name."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the effective pipeline (defaults filled in) as JSON."),
) -> None:
    """Validate PIPELINE (keys, step names and options, types and ranges; every mistake at once) and print
    its effective values, every default filled in. The keys and defaults of every section: docs/pipeline.md."""
    import yaml

    from medseg.models.targets import resolve_target
    from medseg.pipeline import Pipeline

    p = Pipeline.from_yaml(resolve_target(pipeline))
    effective = p.to_dict()
    if as_json:
        typer.echo(json.dumps(effective, indent=2))
        return
    typer.echo(f"{pipeline}: valid pipeline '{p.spec.name}'")
    typer.echo(f"  input       {p.spec.input.modality}, channels {p.spec.input.channels}, labels {p.labels}")
    typer.echo(f"  preprocess  {[s.name for s in p.preprocess]}")
    typer.echo(f"  network     {p.spec.network.name} {p.spec.network.options}")
    t = p.training_config
    typer.echo(
        f"  training    patch {list(t.patch_size)}, batch {t.batch_size}, {t.max_epochs} epochs × "
        f"{t.iterations_per_epoch} iterations, {t.optimizer} lr {t.learning_rate:g} ({t.lr_schedule})"
        + (f", budget {t.max_time_s:g} s" if t.max_time_s else "")
    )
    typer.echo(f"  inference   patch {p.spec.inference.patch_size}, overlap {p.spec.inference.overlap}")
    typer.echo(f"  postprocess {[s.name for s in p.postprocess]}")
    typer.echo(f"  export      {[e.name for e in p.exporters]}")
    typer.echo("effective values (defaults filled in):")
    typer.echo(
        "  " + yaml.safe_dump(effective, sort_keys=False, default_flow_style=None).replace("\n", "\n  ").rstrip()
    )
