"""The one CSV manifest grammar: what ``medseg predict``, ``train``, ``plan`` and ``evaluate`` read from a ``.csv``.

A header row, then one case per row (UTF-8, a byte-order mark is fine; blank rows are skipped)::

    case_id,image,image2,label,class,site
    BRATS_001,imgs/001_t1.nii.gz,imgs/001_flair.nii.gz,labels/001.nii.gz,,A

* ``image`` (required): the first channel; ``image2``, ``image3``, ... further channels, in number order.
* ``case_id`` (optional): names the outputs; default the first image's file name without its suffix and
  ``_0000`` channel suffix. Ids keep ``[A-Za-z0-9._-]``; an id that looks like a path is refused.
* ``label`` (or its synonym ``reference``): a label map, DICOM SEG or RTSTRUCT — the training target, or
  the reference a prediction is evaluated against.
* ``class`` (optional): a case-level integer class (classification training).
* any other column is kept with the case (``extra``).

Relative paths are relative to the manifest's folder. Whether a file must exist is the reader's business
(training refuses a missing file at once; a batch fails only that case).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import InputError
from medseg.io.naming import file_stem, sanitize_case_id, split_channel

_IMAGE = re.compile(r"^image(\d*)$")
_LABEL_COLUMNS = ("label", "reference")
HEADER_HELP = "case_id,image[,image2...][,label][,class]"


@dataclass(frozen=True)
class ManifestRow:
    """One case of a manifest (see the module docstring for the columns)."""

    line: int
    case_id: str
    images: tuple[Path, ...]
    label: Path | None = None
    klass: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """A read manifest: its header's ``columns`` and its ``rows`` in file order."""

    columns: tuple[str, ...]
    rows: tuple[ManifestRow, ...]


def read_manifest(path: str | Path) -> Manifest:
    """Read and check a manifest.

    Raises:
        InputError: unreadable file, no header/rows, no ``image`` column, an image column other than
            ``image``/``imageN``, both ``label`` and ``reference``, an empty image cell, a non-integer class,
            a path-like or unusable case id, or an id used twice — one line naming the file and line.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc}); it must be a UTF-8 CSV file") from exc
    if not rows:
        raise InputError(f"{path}: the manifest has no rows; expected a header '{HEADER_HELP}' and one row per case")
    header = [h.strip() for h in rows[0]]
    images = _image_columns(path, header)
    labels = [header.index(c) for c in _LABEL_COLUMNS if c in header]
    if len(labels) > 1:
        raise InputError(f"{path}: has both 'label' and 'reference' columns (the same thing); keep one")
    known = {*images, *labels, *(header.index(c) for c in ("case_id", "class") if c in header)}
    out: list[ManifestRow] = []
    seen: dict[str, int] = {}
    for line, raw in enumerate(rows[1:], start=2):
        row = [c.strip() for c in raw] + [""] * (len(header) - len(raw))
        files = []
        for i in images:
            if not row[i]:
                raise InputError(f"{path}:{line}: column '{header[i]}' is empty; give a path")
            files.append(_resolve(path.parent, row[i]))
        case_id = _case_id(path, line, row[header.index("case_id")] if "case_id" in header else "", files[0])
        if case_id in seen:
            raise InputError(
                f"{path}:{line}: case id '{case_id}' is also on line {seen[case_id]}; case ids must be unique "
                "(set a 'case_id' column)"
            )
        seen[case_id] = line
        label = _resolve(path.parent, row[labels[0]]) if labels and row[labels[0]] else None
        extra = {header[i]: row[i] for i in range(len(header)) if i not in known}
        out.append(ManifestRow(line, case_id, tuple(files), label, _class(path, line, header, row), extra))
    if not out:
        raise InputError(f"{path}: the manifest has a header but no cases")
    return Manifest(tuple(header), tuple(out))


def _image_columns(path: Path, header: list[str]) -> list[int]:
    if "image" not in header:
        raise InputError(f"{path}: header {','.join(header)} has no 'image' column; expected '{HEADER_HELP}'")
    odd = [h for h in header if h.startswith("image") and not _IMAGE.match(h)]
    if odd:
        raise InputError(
            f"{path}: column '{odd[0]}': channels are named image, image2, image3, ... (in channel order); rename it"
        )
    cols = [i for i, h in enumerate(header) if _IMAGE.match(h)]
    return sorted(cols, key=lambda i: int(_IMAGE.match(header[i])[1] or 1))  # type: ignore[index]


def _case_id(path: Path, line: int, raw: str, first_image: Path) -> str:
    if raw and ("/" in raw or "\\" in raw or raw in (".", "..") or Path(raw).is_absolute()):
        raise InputError(
            f"{path}:{line}: case_id {raw!r} looks like a path; case ids name output files and must not "
            "contain '/', '\\' or be '.'/'..'"
        )
    stem = file_stem(first_image)
    base, channel = split_channel(stem)
    name = raw or (base if channel == 0 else stem)
    try:
        return sanitize_case_id(name)
    except InputError as exc:
        raise InputError(f"{path}:{line}: {exc}") from exc


def _class(path: Path, line: int, header: list[str], row: list[str]) -> int | None:
    if "class" not in header or not row[header.index("class")]:
        return None
    value = row[header.index("class")]
    try:
        return int(value)
    except ValueError as exc:
        raise InputError(f"{path}:{line}: class {value!r} is not an integer") from exc


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p
