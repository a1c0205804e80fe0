"""Label names and display colours shared by every exporter.

A label table maps the integer values of a label map (``1..N``; 0 is background)
to names. Values without a name get ``"label_N"``; colours come from a fixed
palette so the same label has the same colour in every output (Slicer, PNG, HTML).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError, InputError

#: RGB colours (0..255) for label 1, 2, ... (repeats after the end); distinct and
#: readable on grey images, close to 3D Slicer's generic anatomy colours.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (221, 130, 101),  # 1 tissue/liver-like brown-red
    (157, 108, 162),  # 2 purple
    (185, 102, 83),  # 3 kidney-like
    (241, 214, 145),  # 4 yellow
    (111, 184, 210),  # 5 blue
    (216, 101, 79),  # 6 red
    (128, 174, 128),  # 7 green
    (244, 214, 49),  # 8 bright yellow
    (0, 151, 206),  # 9 strong blue
    (183, 156, 220),  # 10 lavender
    (183, 214, 211),  # 11 pale cyan
    (152, 189, 207),  # 12 steel
    (250, 250, 225),  # 13 ivory
    (230, 220, 70),  # 14 mustard
    (0, 145, 30),  # 15 dark green
    (255, 128, 0),  # 16 orange
)

_NAME_OK = re.compile(r"^[^\x00-\x1f\\/]{1,64}$")


def label_name(value: int) -> str:
    """The generated name of an unnamed label: ``"label_N"``."""
    return f"label_{int(value)}"


def label_color(value: int) -> tuple[int, int, int]:
    """RGB (0..255) display colour of label ``value`` (>= 1)."""
    return PALETTE[(int(value) - 1) % len(PALETTE)]


def label_table(values: Iterable[int], names: Mapping[int, str] | None = None) -> dict[int, str]:
    """Names for the union of ``values`` (present in the mask) and the named labels.

    Args:
        values: label values present in the mask (0 is ignored).
        names: user names by value; values without one get ``"label_N"``.

    Returns:
        ``{value: name}`` sorted by value, background excluded.

    Raises:
        ConfigError: a name is empty, too long or holds path separators/control characters,
            a value is negative, or two labels share a name.
    """
    try:
        names = {int(k): v for k, v in (names or {}).items()}  # JSON/YAML keys may arrive as strings
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"label names {dict(names or {})!r}: keys must be label values (1, 2, ...)") from exc
    table: dict[int, str] = {}
    for v in sorted({int(v) for v in values} | {int(k) for k in names}):
        if v < 0:
            raise ConfigError(f"label value {v} is negative; label values are 1, 2, ... (0 = background)")
        if v == 0:
            continue
        name = str(names.get(v, label_name(v))).strip()
        if not _NAME_OK.match(name):
            raise ConfigError(
                f"label {v}: name {name!r} must be 1-64 characters without '/', '\\' or control characters"
            )
        table[v] = name
    seen: dict[str, int] = {}
    for v, name in table.items():
        if name in seen:
            raise ConfigError(f"labels {seen[name]} and {v} share the name {name!r}; give each label its own name")
        seen[name] = v
    return table


def parse_labels(data: Any, where: str = "labels") -> dict[int, str]:
    """Label names from JSON-like data.

    Accepts ``{"1": "liver", "2": "spleen"}``, the nnU-Net ``dataset.json`` style
    ``{"labels": {"background": 0, "liver": 1}}`` (name → value), or a list
    ``["background", "liver", ...]`` indexed by value.

    Raises:
        ConfigError: the structure is none of these; the message names ``where``.
    """
    if isinstance(data, Mapping) and "labels" in data and isinstance(data["labels"], (Mapping, list)):
        data = data["labels"]
    if isinstance(data, list):
        return {i: str(n) for i, n in enumerate(data) if i > 0}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of label value → name, got {type(data).__name__}")
    out: dict[int, str] = {}
    for key, val in data.items():
        if _is_int(key) and isinstance(val, str):
            out[int(key)] = val
        elif isinstance(key, str) and _is_int(val) and not isinstance(val, bool):
            out[int(val)] = key
        else:
            raise ConfigError(
                f'{where}: entry {key!r}: {val!r} is neither \'value: name\' (e.g. "1": "liver") '
                "nor 'name: value' (e.g. \"liver\": 1)"
            )
    out.pop(0, None)
    return out


#: The label-names sidecar the label-map exporters write beside ``CASE.nii.gz``: ``CASE.labels.json``.
SIDECAR_SUFFIX = ".labels.json"


def write_labels_sidecar(labels: dict[int, str], path: str | os.PathLike[str]) -> Path:
    """Write ``{"1": "liver", ...}`` (what :func:`load_labels` and ``--labels`` read) to ``path`` atomically."""
    from medseg.io import write_text_atomic

    text = json.dumps({str(v): n for v, n in labels.items()}, indent=2, ensure_ascii=False) + "\n"
    return write_text_atomic(path, text)


def sidecar_labels(mask: str | os.PathLike[str]) -> dict[int, str] | None:
    """The names in the ``CASE.labels.json`` beside the label map ``mask`` (``CASE.nii.gz``, ``CASE.nrrd``,
    ...), or None when there is none."""
    from medseg.io import file_stem

    p = Path(mask)
    sidecar = p.with_name(f"{file_stem(p)}{SIDECAR_SUFFIX}")
    return load_labels(sidecar) if p.is_file() and sidecar.is_file() else None


def load_labels(path: str | os.PathLike[str]) -> dict[int, str]:
    """Read label names from a JSON file (formats of :func:`parse_labels`).

    Raises:
        InputError: the file is missing or not JSON.
        ConfigError: the JSON has the wrong structure.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{p}: no such labels file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{p}: not a readable JSON labels file ({exc})") from exc
    return parse_labels(data, str(p))


def _is_int(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return True
    return isinstance(x, str) and x.strip().lstrip("-").isdigit()
