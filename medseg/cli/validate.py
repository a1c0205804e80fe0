"""``medseg validate PIPELINE``: check a pipeline file without running anything."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medseg.cli.main import app


@app.command()
def validate(
    pipeline: Path = typer.Argument(..., help="Pipeline file (YAML)."),
    as_json: bool = typer.Option(False, "--json", help="Print the normalised pipeline as JSON."),
) -> None:
    """Validate PIPELINE (keys, step names and options, types and ranges) and print a summary."""
    from medseg.pipeline import Pipeline

    p = Pipeline.from_yaml(pipeline)
    if as_json:
        typer.echo(json.dumps(p.to_dict(), indent=2))
        return
    typer.echo(f"{pipeline}: valid pipeline '{p.spec.name}'")
    typer.echo(f"  input       {p.spec.input.modality}, channels {p.spec.input.channels}, labels {p.labels}")
    typer.echo(f"  preprocess  {[s.name for s in p.preprocess]}")
    typer.echo(f"  network     {p.spec.network.name} {p.spec.network.options}")
    typer.echo(f"  postprocess {[s.name for s in p.postprocess]}")
    typer.echo(f"  export      {[getattr(e, 'name', type(e).__name__) for e in p.exporters]}")
