"""``medseg export MASK --reference IMAGE --format ... -o OUT``: write a mask for viewers, PACS and reports."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import typer

from medseg.cli.main import app
from medseg.core.volume import Volume
from medseg.errors import ConfigError, InputError, did_you_mean
from medseg.io import image_suffix, read
from medseg.io.dicom import is_dicom_file

#: CLI format name → exporter name.
FORMATS = {
    "nifti": "nifti",
    "nrrd": "nrrd",
    "seg.nrrd": "seg_nrrd",
    "dicom-seg": "dicom_seg",
    "rtstruct": "rtstruct",
    "stl": "stl",
    "obj": "obj",
    "ply": "ply",
    "png": "png",
    "html": "html",
    "stats": "stats",
}


def parse_formats(values: list[str]) -> list[str]:
    """Exporter names from ``--format`` values (repeatable and/or comma-separated), in order, unique."""
    out: list[str] = []
    for value in values:
        for name in (v.strip().lower() for v in value.split(",")):
            if not name:
                continue
            exporter = FORMATS.get(name) or (name if name in FORMATS.values() else None)
            if exporter is None:
                raise ConfigError(f"--format: unknown format '{name}'{did_you_mean(name, FORMATS)}")
            if exporter not in out:
                out.append(exporter)
    if not out:
        raise ConfigError(f"--format: give at least one of {', '.join(FORMATS)}")
    return out


def default_case_id(mask: Path) -> str:
    """The mask's file name without its image suffix (``ct_001.nii.gz`` → ``ct_001``)."""
    name = mask.name
    suffix = ".seg.nrrd" if name.lower().endswith(".seg.nrrd") else image_suffix(mask)
    return name[: -len(suffix)] if suffix and name.lower().endswith(suffix) else mask.stem


def read_mask(mask: Path, reference: Volume | None) -> Volume:
    """Read the mask as a label volume; a DICOM SEG or RTSTRUCT file is placed on the reference grid."""
    if mask.is_file() and is_dicom_file(mask) and image_suffix(mask) == "":
        from medseg.io.clinical import file_label_kind

        kind = file_label_kind(mask)
        if kind is not None:
            if reference is None:
                what = "a DICOM SEG" if kind == "seg" else "an RTSTRUCT"
                raise InputError(f"{mask}: {what} needs --reference (the image series it was made on)")
            return read(mask, reference=reference)
    vol = read(mask)
    return vol.replace(kind="label" if vol.n_channels == 1 else "probability")


@app.command()
def export(
    mask: Path = typer.Argument(..., help="Label map (NIfTI, NRRD, ...), or a DICOM SEG or RTSTRUCT file."),
    reference: Path | None = typer.Option(
        None, "--reference", "-r", help="The image the mask was made on: image file or DICOM folder."
    ),
    formats: list[str] = typer.Option(
        ..., "--format", "-f", help=f"Output format, repeatable or comma-separated: {', '.join(FORMATS)}."
    ),
    out: Path = typer.Option(..., "--output", "-o", help="Output folder."),
    labels: Path | None = typer.Option(None, "--labels", help='JSON label names, e.g. {"1": "liver"}.'),
    case_id: str | None = typer.Option(None, "--case-id", help="Output file stem (default: the mask's name)."),
    dicom_source: Path | None = typer.Option(
        None, "--dicom-source", help="Source DICOM series for dicom-seg/rtstruct when --reference is not DICOM."
    ),
    series: str | None = typer.Option(None, "--series", help="SeriesInstanceUID when the DICOM folder holds several."),
    meshes_in_html: bool = typer.Option(False, "--html-meshes", help="Embed surface meshes in the HTML viewer."),
) -> None:
    """Export MASK for 3D viewers (NIfTI, NRRD, Slicer .seg.nrrd, STL/OBJ/PLY, HTML), PACS (DICOM SEG),
    planning systems (RTSTRUCT) and reports."""
    from medseg.export import export_all, load_labels

    names = parse_formats(formats)
    if not mask.exists():
        raise InputError(f"{mask}: no such mask file")
    if reference is not None and not reference.exists():
        raise InputError(f"{reference}: no such reference image or folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read(reference, series_uid=series) if reference is not None else None
        vol = read_mask(mask, image)
        label_names = load_labels(labels) if labels is not None else None
        specs: list[Any] = []
        for name in names:
            if name in ("dicom_seg", "rtstruct") and dicom_source is not None:
                specs.append({name: {"source_series": str(dicom_source)}})
            elif name == "html" and meshes_in_html:
                specs.append({name: {"meshes": True}})
            else:
                specs.append(name)
        paths = export_all(vol, out, case_id or default_case_id(mask), specs, image=image, labels=label_names)
    for w in caught:
        typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
    for p in paths:
        typer.echo(str(p))
