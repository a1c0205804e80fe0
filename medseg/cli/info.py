"""``medseg info PATH``: describe every volume or DICOM series found."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import typer

from medseg.cli.main import app
from medseg.errors import InputError, MedsegError
from medseg.io import find_series, read


def describe(path: Path) -> list[dict[str, Any]]:
    """One record per volume/series at ``path``: shape, spacing, orientation, range, dtype, modality."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        out = []
        for s in find_series(path):
            rec: dict[str, Any] = {
                "path": str(path),
                "series_uid": s.uid,
                "modality": s.modality,
                "description": s.description,
                "kind": s.kind,
                "n_slices": s.n_slices,
                "shape": list(s.size),
                "spacing": [round(v, 4) for v in s.spacing] if s.spacing else None,
                "orientation": s.orientation,
            }
            if s.references or s.names:  # RTSTRUCT/SEG: what they reference and hold
                rec.update(references=list(s.references), names=list(s.names))
            if s.is_image:
                try:
                    vol = read(list(s.files), series_uid=s.uid)
                    rec.update(_stats(vol.numpy()))
                except MedsegError as exc:
                    rec["error"] = str(exc)
            out.append(rec)
        return out
    vol = read(path)
    return [
        {
            "path": str(path),
            "modality": vol.meta.get("modality", ""),
            "shape": list(vol.spatial_shape),
            "channels": vol.n_channels,
            "spacing": [round(v, 4) for v in vol.spacing],
            "orientation": vol.orientation,
            "origin": [round(v, 3) for v in vol.origin],
            **_stats(vol.numpy()),
        }
    ]


def _stats(a: np.ndarray) -> dict[str, Any]:
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    return {
        "dtype": str(a.dtype),
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "nonfinite": int(a.size - finite.size),
    }


@app.command()
def info(
    path: Path = typer.Argument(..., help="Image file (NIfTI, NRRD, MHA, PNG, DICOM) or DICOM folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print every volume/series found at PATH with shape, spacing, orientation and value range."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = describe(path)
    if as_json:
        typer.echo(json.dumps(records, indent=2))
    else:
        for r in records:
            head = r.get("series_uid", r["path"])
            typer.echo(f"{head}")
            for k, v in r.items():
                if k not in ("path", "series_uid") and v not in (None, ""):
                    typer.echo(f"  {k:12s} {v}")
    for w in caught:
        typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
