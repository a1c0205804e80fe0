"""``medseg export MASK --reference IMAGE --format ... -o OUT``: write a mask for viewers, PACS and reports."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from medseg.cli.main import EXPORTER_NAMES, app
from medseg.errors import ConfigError, InputError, did_you_mean

if TYPE_CHECKING:
    from medseg.core.volume import Volume


def parse_formats(values: list[str]) -> list[str]:
    """Exporter names from ``--format`` values (repeatable and/or comma-separated), in order, unique.

    Both spellings are accepted everywhere (``seg.nrrd`` or ``seg_nrrd``, ``dicom-seg`` or ``dicom_seg``);
    see :func:`medseg.export.exporter_name`.
    """
    from medseg.export import EXPORTERS, exporter_name, exporter_names

    out: list[str] = []
    for value in values:
        for name in (v.strip() for v in value.split(",")):
            if not name:
                continue
            exporter = exporter_name(name)
            if exporter is None:
                raise ConfigError(
                    f"--format: unknown format '{name}'{did_you_mean(name, EXPORTERS.names())}; "
                    f"available: {', '.join(exporter_names())}"
                )
            if exporter not in out:
                out.append(exporter)
    if not out:
        raise ConfigError(f"--format: give at least one of {', '.join(exporter_names())}")
    return out


def default_case_id(mask: Path) -> str:
    """The mask's file name without its image suffix (``ct_001.nii.gz`` → ``ct_001``, ``x.seg.nrrd`` → ``x``)."""
    from medseg.io import file_stem

    return file_stem(mask)


def read_mask(mask: Path, reference: Volume | None) -> Volume:
    """Read the mask as a label volume; a DICOM SEG or RTSTRUCT file is placed on the reference grid."""
    from medseg.core.labels import label_values
    from medseg.io import image_suffix, is_dicom_file, read

    if mask.is_file() and is_dicom_file(mask) and image_suffix(mask) == "":
        from medseg.io.clinical import file_label_kind

        if file_label_kind(mask) is not None:
            # a SEG without --reference lies on its own frames; an RTSTRUCT looks for its series beside it
            return read(mask, reference=reference)
    vol = read(mask)
    if vol.n_channels != 1:
        raise InputError(
            f"{mask}: has {vol.n_channels} channels (shape {tuple(vol.array.shape)}); export takes one label map "
            "(0 = background, 1, 2, ...): take the argmax of probabilities first"
        )
    return vol.replace(array=label_values(vol.numpy(), mask, fix=_LABEL_MAP_FIX), kind="label")


_LABEL_MAP_FIX = (
    "threshold it into a label map first (e.g. the CASE.nii.gz that medseg predict writes), or name every label "
    "with --labels if it really is one"
)


def check_label_map(mask: Path, volume: Volume, names: dict[int, str] | None) -> None:
    """Refuse a file with more distinct values than a label map has, unless ``names`` names them all.

    Raises:
        InputError: it looks like a probability map or an image (one line naming the file and the fix).
    """
    from medseg.core.labels import check_not_image

    check_not_image(volume.numpy(), mask, named=names, fix=_LABEL_MAP_FIX)


def mask_label_names(mask: Path, volume: Volume, labels: Path | None) -> dict[int, str] | None:
    """Label names for the export: ``--labels``, else the ``.labels.json`` sidecar beside the mask
    (what ``medseg predict`` writes), else names the file itself carries (SEG segments, Slicer segments)."""
    from medseg.export import load_labels, parse_labels
    from medseg.export.labels import sidecar_labels

    if labels is not None:
        return load_labels(labels)
    from_sidecar = sidecar_labels(mask)
    if from_sidecar is not None:
        return from_sidecar
    carried = volume.meta.get("labels")
    return parse_labels(carried, f"{mask}: label names") if carried else None


@app.command()
def export(
    mask: Path = typer.Argument(..., help="Label map (NIfTI, NRRD, ...), or a DICOM SEG or RTSTRUCT file."),
    reference: Path | None = typer.Option(
        None, "--reference", "-r", help="The image the mask was made on: image file or DICOM folder."
    ),
    formats: list[str] = typer.Option(
        ...,
        "--format",
        "-f",
        help=f"Output format, repeatable or comma-separated: {EXPORTER_NAMES} (snake_case spellings such as "
        "seg_nrrd work too).",
    ),
    out: Path = typer.Option(..., "--output", "-o", help="Output folder."),
    labels: Path | None = typer.Option(
        None,
        "--labels",
        help='JSON label names, e.g. {"1": "liver"} (default: the MASK.labels.json that predict writes beside '
        "the mask, or the segment names of a SEG/.seg.nrrd).",
    ),
    case_id: str | None = typer.Option(None, "--case-id", help="Output file stem (default: the mask's name)."),
    dicom_source: Path | None = typer.Option(
        None, "--dicom-source", help="Source DICOM series for dicom-seg/rtstruct when --reference is not DICOM."
    ),
    series: str | None = typer.Option(None, "--series", help="SeriesInstanceUID when the DICOM folder holds several."),
    meshes_in_html: bool = typer.Option(False, "--html-meshes", help="Embed surface meshes in the HTML viewer."),
) -> None:
    """Export MASK for 3D viewers (NIfTI, NRRD, Slicer .seg.nrrd, STL/OBJ/PLY, HTML), PACS (DICOM SEG),
    planning systems (RTSTRUCT) and reports."""
    from medseg.export import export_all
    from medseg.io import read

    names = parse_formats(formats)
    if not mask.exists():
        raise InputError(f"{mask}: no such mask file")
    if reference is not None and not reference.exists():
        raise InputError(f"{reference}: no such reference image or folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read(reference, series_uid=series) if reference is not None else None
        vol = read_mask(mask, image)
        label_names = mask_label_names(mask, vol, labels)
        check_label_map(mask, vol, label_names)
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
