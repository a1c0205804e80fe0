"""Pipelines (and the demo's sample data) shipped with medseg, found by name.

In a source checkout they are the top-level ``pipelines/`` and ``sample_data/`` folders beside the
``medseg`` package; an installed wheel carries the same files inside the package, as
``medseg/pipelines`` and ``medseg/sample_data`` (``pyproject.toml`` maps the folders), so a
pipeline file's relative paths (``../sample_data/checkpoints/...``) mean the same in both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Shipped = Literal["pipelines", "sample_data"]
_PACKAGE = Path(__file__).resolve().parents[1]


def shipped_folder(kind: Shipped) -> Path | None:
    """The folder of shipped ``kind``: inside the installed package, else beside it in a checkout (None: neither)."""
    for candidate in (_PACKAGE / kind, _PACKAGE.parent / kind):
        if candidate.is_dir():
            return candidate
    return None


def shipped_pipelines() -> dict[str, Path]:
    """Name (file stem) → path of every shipped pipeline file."""
    folder = shipped_folder("pipelines")
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder is not None else {}


def shipped_pipeline(name: str) -> Path | None:
    """The shipped pipeline ``name`` (``brain_extraction``, ``ct_organs.yaml``), or None."""
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    return shipped_pipelines().get(stem)


def is_shipped(path: Path) -> bool:
    """True when ``path`` is one of the shipped pipeline files."""
    folder = shipped_folder("pipelines")
    return folder is not None and path.resolve().parent == folder.resolve()
