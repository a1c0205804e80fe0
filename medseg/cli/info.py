"""``medseg info PATH``: describe every volume or DICOM series found."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from medseg.cli.main import app
from medseg.errors import ConfigError, InputError, MedsegError

if TYPE_CHECKING:
    import numpy as np

    from medseg.core.volume import Volume


def describe(path: Path, *, spacing_tolerance: float | None = None) -> list[dict[str, Any]]:
    """One record per volume/series at ``path``: shape, spacing, orientation, origin and direction
    (RAS mm), value range, dtype, modality; a series that cannot be read has an ``error``."""
    from medseg.io import SPACING_TOLERANCE, find_series, read, read_dicom

    tolerance = spacing_tolerance or SPACING_TOLERANCE
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        out = []
        for s in find_series(path):
            rec: dict[str, Any] = {
                "path": str(path),
                "series_uid": s.uid,
                "patient_id": str(s.headers[0][1].get("PatientID", "") or "") if s.headers else "",
                "folder": _folder(path, s.files),
                "modality": s.modality,
                "description": s.description,
                "kind": s.kind,
                "n_slices": s.n_slices,
                "shape": list(s.size),
            }
            if s.references or s.names:  # RTSTRUCT/SEG: what they reference and hold
                rec.update(references=list(s.references), names=list(s.names))
            if s.is_image:
                try:
                    rec.update(_geometry_and_values(read_dicom(s, spacing_tolerance=tolerance)))
                except MedsegError as exc:
                    rec["error"] = str(exc)
            out.append(rec)
        return out
    vol = read(path, spacing_tolerance=tolerance)
    return [{"path": str(path), "modality": vol.meta.get("modality", ""), **_geometry_and_values(vol)}]


def _folder(root: Path, files: tuple[Path, ...]) -> str:
    """Where a series' files lie, relative to ``root`` (``.`` for root itself)."""
    import os

    common = Path(os.path.commonpath([str(f.parent) for f in files])) if files else root
    return common.relative_to(root).as_posix() if common.is_relative_to(root) else str(common)


def nothing_readable(path: Path, records: list[dict[str, Any]]) -> str:
    """Why ``path`` gave no image: the first error, or the label objects found and the series they need."""
    errors = [r["error"] for r in records if "error" in r]
    if errors:
        return f"{path}: nothing could be read ({errors[0]})"
    labels = [r for r in records if "references" in r or "names" in r]
    if labels:
        r = labels[0]
        refs = ", ".join(r.get("references") or []) or "no series recorded"
        names = ", ".join((r.get("names") or [])[:5])
        return (
            f"{path}: holds no image series, only {len(labels)} label object(s): {r['kind']} in "
            f"{r['folder']} ({len(r.get('names') or [])} ROI/segment(s): {names}) on image series {refs}; give the "
            "folder that holds that series (the RTSTRUCT/SEG may lie beside it)"
        )
    return f"{path}: nothing could be read (no image series found)"


def _geometry_and_values(vol: Volume) -> dict[str, Any]:
    import numpy as np

    return {
        "shape": list(vol.spatial_shape),
        "channels": vol.n_channels,
        "spacing": [round(v, 4) for v in vol.spacing],
        "orientation": vol.orientation,
        "origin_ras_mm": [round(v, 3) for v in vol.origin],
        "direction_ras": np.round(vol.direction, 4).T.tolist(),
        **_stats(vol.numpy()),
    }


def _stats(a: np.ndarray) -> dict[str, Any]:
    import numpy as np

    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    return {
        "dtype": a.dtype.name,  # 'int16', not the byte-order code '>i2'
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "nonfinite": int(a.size - finite.size),
    }


@app.command()
def info(
    path: Path | None = typer.Argument(
        None, metavar="PATH", help="Image file (NIfTI, NRRD, MHA, PNG, DICOM) or DICOM folder."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    plugins: bool = typer.Option(
        False, "--plugins", help="List the plugins (entry points) medseg found: what loaded and what failed."
    ),
    spacing_tolerance: float = typer.Option(
        None, "--spacing-tolerance", help="DICOM: allowed deviation of slice gaps from the median (fraction, 0.05)."
    ),
) -> None:
    """Print every volume/series found at PATH with shape, spacing, orientation, origin/direction (RAS) and
    value range. Exit status 1 when nothing at PATH could be read. With --plugins (PATH optional), list the
    third-party plugins first."""
    if plugins:
        _print_plugins(as_json)
        if path is None:
            return
    if path is None:
        raise ConfigError("medseg info: give an image file or DICOM folder, or --plugins to list plugins")
    with warnings.catch_warnings(record=True) as caught, _quiet_library_logs():
        warnings.simplefilter("always")
        records = describe(path, spacing_tolerance=spacing_tolerance)
    if as_json:
        typer.echo(json.dumps(records, indent=2))
    else:
        for r in records:
            head = r.get("series_uid", r["path"])
            if "series_uid" in r:
                head += f"  (patient {r['patient_id'] or '?'}, folder {r['folder']})"
            typer.echo(head)
            for k, v in r.items():
                if k in ("path", "series_uid", "patient_id", "folder") or v in (None, ""):
                    continue
                if k == "direction_ras":
                    v = "  ".join(f"{n}: [{', '.join(f'{c:g}' for c in axis)}]" for n, axis in zip("xyz", v))
                typer.echo(f"  {_LABELS.get(k, k):16s} {v}")
    for message in dict.fromkeys(str(w.message) for w in caught):  # each warning once
        typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)
    readable = [r for r in records if "error" not in r and r.get("dtype")]
    if not readable:
        raise InputError(nothing_readable(path, records))


def _print_plugins(as_json: bool) -> None:
    """Print every entry point of medseg's plugin groups: loaded, or failed with the exception."""
    import dataclasses

    from medseg.builtins import PLUGIN_GROUPS, plugin_report

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the failures are listed below, with their reason
        report = plugin_report()
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(p) for p in report], indent=2))
        return
    if not report:
        typer.echo(f"no plugins installed (entry-point groups: {', '.join(PLUGIN_GROUPS)})")
    for p in report:
        typer.echo(f"{'loaded' if p.loaded else 'FAILED'}  {p.describe()}" + (f": {p.error}" if p.error else ""))


_LABELS = {"origin_ras_mm": "origin (RAS mm)", "direction_ras": "axes (RAS)", "spacing": "spacing (mm)"}


class _quiet_library_logs:
    """Keep nibabel's and pydicom's log lines (e.g. 'pixdim[0] should be 1 or -1') out of the table; the
    problems that matter reach the user as medseg warnings."""

    def __enter__(self) -> None:
        self._levels = {name: logging.getLogger(name).level for name in ("nibabel", "nibabel.global", "pydicom")}
        for name in self._levels:
            logging.getLogger(name).setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
