"""``medseg model export|install|list``: trained runs as verified zip packages, installed by name."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medseg.cli.main import app

model_app = typer.Typer(
    help="Model packages: export a training run as one zip, install it into $MEDSEG_HOME, list installed models.",
    no_args_is_help=True,
)
app.add_typer(model_app, name="model")


@model_app.command("export")
def export(
    run_dir: Path = typer.Argument(..., help="Training run folder (what 'medseg train -o' wrote: fold_K/ or all/)."),
    output: Path = typer.Option(..., "-o", "--output", help="The package to write (.zip)."),
    name: str = typer.Option(None, "--name", help="Model name (default: the pipeline's name)."),
    pipeline: Path = typer.Option(
        None, "--pipeline", help="Pipeline to ship (default: final_pipeline.yaml of the run, else the checkpoints')."
    ),
    onnx: bool = typer.Option(False, "--onnx", help="Also write each fold as ONNX, checked against torch (1e-4)."),
) -> None:
    """Pack every fold's weights, the pipeline, plan/fingerprint/splits, metrics, provenance and a model card."""
    from medseg.batch.fingerprint import hash_file
    from medseg.errors import ConfigError
    from medseg.models import export_model, read_manifest

    if output.suffix.lower() != ".zip":
        raise ConfigError(f"-o {output}: a model package is a .zip file; e.g. -o model.zip")
    path = export_model(run_dir, output, name=name, pipeline_file=pipeline, onnx=onnx)
    manifest = read_manifest(path)
    typer.echo(
        f"{path}: model '{manifest['name']}', folds {', '.join(manifest['folds'])}, {len(manifest['files'])} files"
    )
    typer.echo(f"  sha256 {hash_file(path)} (publish it with the file)")


@model_app.command("install")
def install(
    package: Path = typer.Argument(..., help="A model package (.zip) from 'medseg model export'."),
    name: str = typer.Option(None, "--name", help="Install under this name (default: the package's)."),
    force: bool = typer.Option(False, "--force", help="Replace an installed model of the same name."),
) -> None:
    """Verify PACKAGE (paths, checksums, weights-only) and unpack it into $MEDSEG_HOME/models/NAME."""
    from medseg.models import install_model

    folder = install_model(package, name=name, force=force)
    typer.echo(f"installed '{folder.name}' in {folder}")
    typer.echo(f"  predict with: medseg predict {folder.name} -i IMAGE -o OUT")


@model_app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List installed models (name, labels, folds, folder)."""
    from medseg.models import installed_models, medseg_home

    models = installed_models()
    if as_json:
        typer.echo(json.dumps([{**m, "path": str(m["path"])} for m in models], indent=2))
        return
    if not models:
        typer.echo(f"no models installed in {medseg_home() / 'models'} (medseg model install PACKAGE.zip)")
    for m in models:
        labels = ", ".join(f"{k}: {v}" for k, v in m["labels"].items())
        typer.echo(f"{m['name']:24s} labels {{{labels}}}, folds {', '.join(m['folds'])}  {m['path']}")
