"""Cases of a batch: discovery from a folder or a CSV manifest, with stable, file-name-safe ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError, InputError, OutputError
from medseg.io import image_suffix
from medseg.io.dicom import is_dicom_file
from medseg.io.dicom_identity import series_identity
from medseg.io.naming import check_case_id, file_stem, group_channels, sanitize_case_id, split_channel

#: How DICOM cases are named: ``patient`` (PatientID; with study date and series number when one patient
#: has several series in the source), ``series`` (always PatientID, study date and series number) or
#: ``folder`` (the folder's name).
CASE_ID_RULES = ("patient", "series", "folder")


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
        check_case_id(self.case_id)  # an id that cannot name outputs fails here, before any work
        if not self.images:
            raise InputError(f"case '{self.case_id}': no input image given")

    @property
    def inputs(self) -> tuple[Path, ...]:
        """Every input path of the case: images, then the reference when there is one."""
        return self.images + ((self.reference,) if self.reference is not None else ())


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


class CaseList(list):  # type: ignore[type-arg]
    """The cases of a source (a ``list`` of :class:`Case`), plus the files that were not taken.

    Attributes:
        skipped: ``(path, reason)`` for every file of the source that is not part of a case
            (text files, unreadable files, ...), reported in the run's report.
        failed: ``(case_id, reason)`` for cases the source has but could not provide (e.g. a series an
            archive sent incompletely); each is a failed row of the run's report.
    """

    def __init__(
        self,
        cases: Iterable[Case] = (),
        skipped: Iterable[tuple[Path, str]] = (),
        failed: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(cases)
        self.skipped: list[tuple[Path, str]] = list(skipped)
        self.failed: list[tuple[str, str]] = list(failed)


def discover_cases(source: str | Path, *, series: str | None = None, case_ids: str = "patient") -> CaseList:
    """The cases of an image file, a folder or a CSV manifest, sorted by case id.

    Folder rules:
        - an image file (NIfTI, NRRD, MHA, PNG, ...) is one case named after the file;
        - ``NAME_0000.nii.gz``, ``NAME_0001.nii.gz``, ... form one case ``NAME`` with the
          channels in index order (nnU-Net naming); a missing index is an error;
        - a sub-folder holding DICOM files (at any depth) is one case, and a folder that directly
          holds DICOM files is itself one case; DICOM cases are named by ``case_ids``.
        Hidden files (``.name``) are ignored; every other file that is not part of a case is
        listed in :attr:`CaseList.skipped` with the reason.

    A single image or DICOM file is one case named after the file (channel suffix removed).

    Manifest (``.csv``): the grammar of :mod:`medseg.io.manifest` (``image``, ``image2``, ...,
    optional ``case_id``, ``label``/``reference``, ``class``; other columns kept in
    :attr:`Case.extra`; paths relative to the manifest's folder).

    Args:
        source: an image file, a DICOM file, a folder or a ``.csv`` manifest.
        series: SeriesInstanceUID to read from DICOM cases that hold several series
            (stored as ``extra["series_uid"]``).
        case_ids: how DICOM cases are named (:data:`CASE_ID_RULES`): ``patient`` (default) names a
            case by its PatientID, adding the study date and series number where one patient has
            several series in the source, so ``pA/CT`` and ``pB/CT`` never share an id; ``series``
            always adds them; ``folder`` names a case after its folder. A series without a
            PatientID is named after its folder.

    Raises:
        InputError: the source is missing or holds no case, two inputs map to one case id
            (both are named), a channel is missing, or the manifest is malformed.
    """
    if case_ids not in CASE_ID_RULES:
        raise ConfigError(f"case_ids must be one of {', '.join(CASE_ID_RULES)} (CLI: --case-ids), got {case_ids!r}")
    src = Path(source)
    if not src.exists():
        raise InputError(f"{src}: no such file or folder; give an image, a folder of cases or a .csv manifest")
    if src.is_file():
        if src.suffix.lower() == ".csv":
            return CaseList(_from_manifest(src))
        return CaseList([_single_file(src, series)])
    return _from_folder(src, series, case_ids)


def _single_file(path: Path, series: str | None) -> Case:
    suffix = image_suffix(path)
    if not suffix and not is_dicom_file(path):
        raise InputError(f"{path}: {skip_reason(path)}; give an image file, a DICOM file or folder, or a .csv manifest")
    stem = path.name[: -len(suffix)] if suffix else path.stem
    return Case(sanitize_case_id(split_channel(stem)[0]), (path,), extra=_extra(series))


def skip_reason(path: Path) -> str:
    """Why ``path`` is not an input medseg reads (one phrase, for reports)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if head[:2] in (b"\x02\x00", b"\x08\x00") and head[3:4] == b"\x00":
        return (
            "looks like DICOM without the 128-byte preamble ('DICM' at byte 128), which medseg does not guess; "
            "re-save it with a preamble (e.g. dcmconv or pydicom's save_as(..., enforce_file_format=True))"
        )
    return f"not an image medseg reads (suffix '{''.join(path.suffixes) or 'none'}', no DICOM preamble)"


def _extra(series: str | None) -> dict[str, Any]:
    return {"series_uid": series} if series else {}


def dicom_case_ids(folders: Sequence[Path], series: str | None = None, rule: str = "patient") -> list[str]:
    """Case ids for DICOM case folders, one per folder, by ``rule`` (see :data:`CASE_ID_RULES`).

    ``patient``: the PatientID; where several folders of ``folders`` hold the same patient, each
    gets ``PATIENT_DATE_S<SeriesNumber>`` (and part of its SeriesInstanceUID where that still
    collides). A folder whose image series has no PatientID keeps its folder name. Identical ids
    that remain (two copies of one series) are reported by the caller.
    """
    if rule == "folder":
        return [sanitize_case_id(f.name) for f in folders]
    ids = [series_identity(f, series) for f in folders]
    base = [
        sanitize_case_id(i.patient_id) if i and i.patient_id else sanitize_case_id(f.name) for f, i in zip(folders, ids)
    ]
    counts = Counter(base)
    names = []
    for _f, ident, b in zip(folders, ids, base):
        if ident is None or not ident.patient_id or (rule == "patient" and counts[b] == 1):
            names.append(b)
            continue
        parts = [b, ident.study_date or "nodate", f"S{ident.series_number}" if ident.series_number else ""]
        names.append(sanitize_case_id("_".join(p for p in parts if p)))
    seen = Counter(names)
    for k, (ident, name) in enumerate(zip(ids, names)):
        if seen[name] > 1 and ident is not None and ident.patient_id and ident.series_uid:
            names[k] = sanitize_case_id(f"{name}_{ident.series_uid.rsplit('.', 1)[-1][-8:]}")
    return names


def _from_folder(folder: Path, series: str | None, case_ids: str = "patient") -> CaseList:
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if any(p.is_file() and is_dicom_file(p) for p in entries):
        return CaseList([Case(dicom_case_ids([folder], series, case_ids)[0], (folder,), extra=_extra(series))])
    found: list[tuple[str, str, Case]] = []  # (id, source description, case)
    dicom_dirs: list[Path] = []
    images: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for p in entries:
        if p.is_dir():
            if any(f.is_file() and not f.name.startswith(".") and is_dicom_file(f) for f in sorted(p.rglob("*"))):
                dicom_dirs.append(p)
            else:
                skipped.append((p, "a folder without DICOM files"))
        elif image_suffix(p):
            images.append(p)
        else:
            skipped.append((p, skip_reason(p)))
    for cid, p in zip(dicom_case_ids(dicom_dirs, series, case_ids), dicom_dirs):
        found.append((cid, f"{p.name}/", Case(cid, (p,), extra=_extra(series))))
    grouped, plain = group_channels(images, folder)
    for p in plain:
        cid = sanitize_case_id(file_stem(p))
        found.append((cid, p.name, Case(cid, (p,))))
    for name, files in grouped.items():
        cid = sanitize_case_id(name)
        found.append((cid, ", ".join(f.name for f in files), Case(cid, tuple(files))))
    if not found:
        listed = "; ".join(f"{p.name}: {why}" for p, why in skipped[:3])
        raise InputError(
            f"{folder}: no cases found; expected image files (.nii.gz, .nrrd, ...), NAME_0000.nii.gz channel "
            "files, or one DICOM series per sub-folder" + (f" (skipped {listed})" if listed else "")
        )
    return CaseList(_unique(found, folder), skipped)


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
    from medseg.io.manifest import read_manifest

    found = []
    for row in read_manifest(path).rows:
        extra = {**row.extra, **({"class": str(row.klass)} if row.klass is not None else {})}
        found.append((row.case_id, f"line {row.line}", Case(row.case_id, row.images, row.label, extra)))
    return _unique(found, path)
