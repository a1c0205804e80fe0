"""``medseg dataset convert SOURCE -o DatasetNNN_Name --labels labels.yaml``: a training set in nnU-Net layout."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from medseg.cli.main import app
from medseg.errors import ConfigError, InputWarning

dataset_app = typer.Typer(
    help="Prepare training datasets (clinical DICOM exports → nnU-Net layout).", no_args_is_help=True
)
app.add_typer(dataset_app, name="dataset")


def load_label_names(path: Path) -> dict[int, list[str]]:
    """``{value: [name, synonym, pattern, ...]}`` from a YAML file: the mapping itself, ``labels:``, or a pipeline file.

    Raises:
        ConfigError: missing file, invalid YAML, or a malformed mapping (names the file).
    """
    from medseg.io.roi_names import parse_label_names
    from medseg.pipeline.config import parse_yaml

    if not path.is_file():
        raise ConfigError(f"{path}: labels file not found")
    data = parse_yaml(path.read_text(encoding="utf-8", errors="replace"), path)
    if isinstance(data, dict) and isinstance(data.get("input"), dict) and "labels" in data["input"]:
        data = data["input"]["labels"]  # a pipeline file
    elif isinstance(data, dict) and "labels" in data:
        data = data["labels"]
    try:
        return parse_label_names(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc} (write e.g. '1: [liver, Liver, \"LIVER*\"]')") from exc


@dataset_app.command("convert")
def convert(
    source: Path = typer.Argument(
        ..., help="DICOM export (image series + RTSTRUCT/SEG), CSV manifest or dataset folder."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder named DatasetNNN_Name (nnU-Net layout)."),
    labels: Path = typer.Option(
        ..., "--labels", help="YAML: label value → ROI name or [name, synonym, 'PATTERN*'] (or a pipeline file)."
    ),
) -> None:
    """Convert SOURCE to an nnU-Net dataset (NIfTI images and label maps, dataset.json); unchanged cases are reused."""
    from medseg.training import load_dataset
    from medseg.training.convert import convert_to_nnunet

    names = load_label_names(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)  # the skipped cases are printed below, once each
        dataset = load_dataset(source, labels=names)
    report = convert_to_nnunet(dataset, output)
    for line in report.skipped:
        typer.secho(f"skipped: {line}", fg=typer.colors.YELLOW, err=True)
    typer.echo(
        f"{output}: {len(report.converted)} converted, {len(report.reused)} unchanged, "
        f"{len(report.removed)} removed, {len(report.skipped)} skipped"
    )
