"""Cases of a batch: discovery from a folder or a CSV manifest, with stable, file-name-safe ids."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import InputError, OutputError
from medseg.io import image_suffix
from medseg.io.dicom import is_dicom_file

#: ``NAME_0000`` (nnU-Net / MSD channel naming: four-digit channel index after the case name).
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_REFERENCE_COLUMNS = ("reference", "label")


@dataclass(frozen=True)
class Case:
    """One unit of work of a batch.

    Attributes:
        case_id: stable id, safe as a file name (``[A-Za-z0-9._-]``, never ``.``/``..``);
            outputs and the provenance sidecar are named after it.
        images: the input images in channel order: files, or one DICOM folder.
        reference: optional reference segmentation (e.g. for evaluation).
        extra: other manifest columns, and ``series_uid`` for DICOM cases when chosen.
    """

    case_id: str
    images: tuple[Path, ...]
    reference: Path | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_case_id(self.case_id)
        if not self.images:
            raise InputError(f"case '{self.case_id}': no input image given")

    @property
    def inputs(self) -> tuple[Path, ...]:
        """Every input path of the case: images, then the reference when there is one."""
        return self.images + ((self.reference,) if self.reference is not None else ())


def sanitize_case_id(name: str) -> str:
    """Map a file or folder name to a case id: characters outside ``[A-Za-z0-9._-]`` become ``_``.

    Raises:
        InputError: the name is empty, or is ``.``/``..`` (which would name a folder, not a file).
    """
    cid = _UNSAFE.sub("_", name.strip())
    if cid in ("", ".", ".."):
        raise InputError(f"'{name}' cannot be used as a case id; rename the input so its name has letters or digits")
    return cid


def check_case_id(case_id: str) -> None:
    """Refuse a case id that is not a plain, safe file name.

    Raises:
        OutputError: the id contains a path separator or characters outside ``[A-Za-z0-9._-]``,
            is absolute, or is ``.``/``..`` — it could write outside the output folder.
    """
    if not isinstance(case_id, str) or case_id in ("", ".", "..") or _UNSAFE.search(case_id):
        raise OutputError(
            f"case id {case_id!r} is not a safe file name: use only letters, digits, '.', '_' and '-' "
            "(no '/', '..' or absolute paths), so outputs stay inside the output folder"
        )


def output_path(out_dir: str | Path, name: str) -> Path:
    """``out_dir / name``, refusing any name that would leave ``out_dir``.

    Processors use this to place outputs, e.g. ``output_path(out_dir, f"{case.case_id}.nii.gz")``.

    Raises:
        OutputError: ``name`` is absolute, contains ``..`` or otherwise resolves outside ``out_dir``.
    """
    root = Path(out_dir).resolve()
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or not name:
        raise OutputError(f"output name {name!r} would leave the output folder {root}; give a plain relative name")
    target = (root / p).resolve()
    if not target.is_relative_to(root) or target == root:
        raise OutputError(f"output name {name!r} resolves to {target}, outside the output folder {root}")
    return target


def discover_cases(source: str | Path, *, series: str | None = None) -> list[Case]:
    """The cases of a folder or a CSV manifest, sorted by case id.

    Folder rules:
        - an image file (NIfTI, NRRD, MHA, PNG, ...) is one case named after the file;
        - ``NAME_0000.nii.gz``, ``NAME_0001.nii.gz``, ... form one case ``NAME`` with the
          channels in index order (nnU-Net naming); a missing index is an error;
        - a sub-folder holding DICOM files (at any depth) is one case named after the sub-folder;
        - a folder that directly holds DICOM files is itself one case.
        Hidden files (``.name``) and other files are ignored.

    Manifest (``.csv``): a header with ``case_id`` and ``image`` columns, then any further
    ``image*`` columns (more channels, in column order), an optional ``reference`` (or
    ``label``) column and other columns kept in :attr:`Case.extra`. Relative paths are
    relative to the manifest's folder.

    Args:
        source: a folder or a ``.csv`` manifest.
        series: SeriesInstanceUID to read from DICOM cases that hold several series
            (stored as ``extra["series_uid"]``).

    Raises:
        InputError: the source is missing or holds no case, two inputs map to one case id
            (both are named), a channel is missing, or the manifest is malformed.
    """
    src = Path(source)
    if not src.exists():
        raise InputError(f"{src}: no such file or folder; give a folder of cases or a .csv manifest")
    if src.is_file():
        if src.suffix.lower() != ".csv":
            raise InputError(f"{src}: a batch source is a folder of cases or a .csv manifest, not a single file")
        return _from_manifest(src)
    return _from_folder(src, series)


def _extra(series: str | None) -> dict[str, Any]:
    return {"series_uid": series} if series else {}


def _from_folder(folder: Path, series: str | None) -> list[Case]:
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if any(p.is_file() and is_dicom_file(p) for p in entries):
        return [Case(sanitize_case_id(folder.name), (folder,), extra=_extra(series))]
    found: list[tuple[str, str, Case]] = []  # (id, source description, case)
    channels: dict[str, dict[int, Path]] = {}
    for p in entries:
        if p.is_dir():
            if any(f.is_file() and not f.name.startswith(".") and is_dicom_file(f) for f in sorted(p.rglob("*"))):
                cid = sanitize_case_id(p.name)
                found.append((cid, f"{p.name}/", Case(cid, (p,), extra=_extra(series))))
            continue
        suffix = image_suffix(p)
        if not suffix:
            continue
        stem = p.name[: -len(suffix)]
        m = _CHANNEL.match(stem)
        if m:
            channels.setdefault(m["case"], {})[int(m["channel"])] = p
        else:
            cid = sanitize_case_id(stem)
            found.append((cid, p.name, Case(cid, (p,))))
    for name, by_index in channels.items():
        indices = sorted(by_index)
        if indices != list(range(len(indices))):
            missing = sorted(set(range(indices[-1] + 1)) - set(indices))
            raise InputError(
                f"{folder}: case '{name}' has channels {', '.join(f'{i:04d}' for i in indices)} but lacks "
                f"{', '.join(f'{name}_{i:04d}' for i in missing)}; channel files must be numbered 0000, 0001, ... "
                "without gaps"
            )
        cid = sanitize_case_id(name)
        files = tuple(by_index[i] for i in indices)
        found.append((cid, ", ".join(f.name for f in files), Case(cid, files)))
    if not found:
        raise InputError(
            f"{folder}: no cases found; expected image files (.nii.gz, .nrrd, ...), NAME_0000.nii.gz channel "
            "files, or one DICOM series per sub-folder"
        )
    return _unique(found, folder)


def _unique(found: Iterable[tuple[str, str, Case]], source: Path) -> list[Case]:
    seen: dict[str, str] = {}
    cases: list[Case] = []
    for cid, what, case in found:
        if cid in seen:
            raise InputError(
                f"{source}: '{seen[cid]}' and '{what}' both map to case id '{cid}'; rename one of them "
                "(case ids keep only letters, digits, '.', '_' and '-')"
            )
        seen[cid] = what
        cases.append(case)
    return sorted(cases, key=lambda c: c.case_id)


def _from_manifest(path: Path) -> list[Case]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc}); it must be a UTF-8 CSV file") from exc
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise InputError(f"{path}: the manifest is empty; expected a header 'case_id,image[,image2...][,reference]'")
    header = [h.strip() for h in rows[0]]
    if "case_id" not in header or "image" not in header:
        raise InputError(
            f"{path}: header {','.join(header)} lacks 'case_id' or 'image'; expected "
            "'case_id,image[,image2...][,reference]'"
        )
    image_cols = [i for i, h in enumerate(header) if h.startswith("image")]
    ref_col = next((header.index(h) for h in _REFERENCE_COLUMNS if h in header), None)
    extra_cols = [i for i, h in enumerate(header) if i not in image_cols and i != ref_col and h != "case_id"]
    id_col = header.index("case_id")
    base = path.parent
    found: list[tuple[str, str, Case]] = []
    for line, row in enumerate(rows[1:], start=2):
        row = [c.strip() for c in row] + [""] * (len(header) - len(row))
        raw_id = row[id_col]
        if "/" in raw_id or "\\" in raw_id or raw_id in (".", "..") or Path(raw_id).is_absolute():
            raise InputError(
                f"{path}:{line}: case_id {raw_id!r} looks like a path; case ids name output files and must not "
                "contain '/', '\\' or be '.'/'..'"
            )
        try:
            cid = sanitize_case_id(raw_id)
        except InputError as exc:
            raise InputError(f"{path}:{line}: {exc}") from exc
        images = []
        for i in image_cols:
            if not row[i]:
                raise InputError(f"{path}:{line}: column '{header[i]}' is empty for case '{raw_id}'; give a path")
            images.append(_resolve(base, row[i]))
        reference = _resolve(base, row[ref_col]) if ref_col is not None and row[ref_col] else None
        extra = {header[i]: row[i] for i in extra_cols}
        found.append((cid, f"line {line} ({raw_id})", Case(cid, tuple(images), reference, extra)))
    if not found:
        raise InputError(f"{path}: the manifest has a header but no cases")
    return _unique(found, path)


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p
