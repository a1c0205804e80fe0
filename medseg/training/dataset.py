"""Training datasets: an nnU-Net/MSD folder, a folder of DICOM series with label files, or a CSV.

``load_dataset(path)`` returns a :class:`Dataset` of :class:`TrainingCase` s (image channel files,
label file, optional case-level class) plus label and channel names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import InputError
from medseg.io import image_suffix
from medseg.io.dicom import is_dicom_file
from medseg.io.naming import group_channels
from medseg.io.roi_names import LabelNames


@dataclass(frozen=True)
class TrainingCase:
    """One training case.

    Attributes:
        case_id: unique name (file stem in nnU-Net layout).
        images: one path per channel (file, or DICOM folder), in channel order.
        label: label map file (0 = background), a DICOM SEG/RTSTRUCT, or None (classification-only / unlabeled).
        class_label: case-level class for classifiers, or None.
        series_uid: the image series to read when the image folder holds several (clinical exports).
        label_names: for SEG/RTSTRUCT labels, ``{value: [name, synonym, pattern, ...]}`` of the ROIs to read.
    """

    case_id: str
    images: list[Path]
    label: Path | None = None
    class_label: int | None = None
    series_uid: str | None = None
    label_names: dict[int, list[str]] | None = None


@dataclass(frozen=True)
class Dataset:
    """Cases plus what they mean.

    Attributes:
        cases: the cases, sorted by id.
        labels: label value → name (0 = background), from ``dataset.json`` when present.
        channels: channel names (e.g. ``["CT"]``, ``["T1", "T2"]``).
        source: the folder or CSV it came from.
        skipped: one line per case left out (e.g. an RTSTRUCT without a wanted ROI), naming case and file.
    """

    cases: list[TrainingCase]
    labels: dict[int, str] = field(default_factory=dict)
    channels: list[str] = field(default_factory=list)
    source: Path | None = None
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cases)

    def case(self, case_id: str) -> TrainingCase:
        """The case named ``case_id``."""
        for c in self.cases:
            if c.case_id == case_id:
                return c
        raise InputError(f"{self.source}: no case '{case_id}'")


def load_dataset(path: str | os.PathLike[str], *, labels: LabelNames | None = None) -> Dataset:
    """Open a training dataset.

    Accepted layouts:

    * nnU-Net/MSD folder: ``dataset.json``, ``imagesTr/CASE_0000.nii.gz`` (one file per
      channel ``_0000``, ``_0001``, ...), ``labelsTr/CASE.nii.gz``.
    * CSV manifest: columns ``image`` (and ``image2``, ``image3``, ... for more channels),
      ``label`` and/or ``class`` (case-level integer), optional ``case_id``; relative paths
      are relative to the CSV's folder. A label may be a DICOM SEG or RTSTRUCT file.
    * A folder of DICOM series: one sub-folder per case holding the DICOM files and a
      label file named ``label.*`` (or ``labels/CASE.*`` / ``labelsTr/CASE.*`` beside them).
    * A clinical DICOM export (any folder layout): image series with RTSTRUCT or SEG objects
      that reference them, matched through their UIDs (see :mod:`medseg.training.clinical`).

    Args:
        path: the folder or CSV.
        labels: ``{value: [name, synonym, "PATTERN*"]}`` mapping RTSTRUCT ROI / SEG segment
            names to label values (a pipeline's ``label_synonyms``); needed for SEG/RTSTRUCT labels.
            Cases whose objects miss a wanted ROI, or match one ambiguously, are left out and
            listed in ``Dataset.skipped``.

    Raises:
        InputError: unknown layout, missing files, cases without labels; the message names
            the file or case.
    """
    from medseg.training import clinical

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such dataset file or folder")
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return clinical.with_label_objects(_load_csv(p), labels)
        raise InputError(f"{p}: a dataset is a folder (nnU-Net layout or DICOM series) or a .csv manifest")
    if (p / "imagesTr").is_dir():
        return _load_nnunet(p)
    if not _has_label_files(p):
        return clinical.load_dicom_export(p, labels)
    return _load_dicom_folder(p)


def _has_label_files(root: Path) -> bool:
    """True for the one-folder-per-case DICOM layout with label image files (``label.*``, ``labels/``)."""
    if (root / "labels").is_dir() or (root / "labelsTr").is_dir():
        return True
    return any(
        f.name.startswith("label") and image_suffix(f) for sub in root.iterdir() if sub.is_dir() for f in sub.iterdir()
    )


def _load_nnunet(root: Path) -> Dataset:
    meta: dict = {}
    if (root / "dataset.json").exists():
        try:
            meta = json.loads((root / "dataset.json").read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{root / 'dataset.json'}: not valid JSON ({exc})") from exc
    ending = meta.get("file_ending")
    files = [
        f
        for f in sorted((root / "imagesTr").iterdir())
        if image_suffix(f) and not f.name.startswith(".") and (not ending or f.name.endswith(ending))
    ]
    groups, plain = group_channels(files, root / "imagesTr")
    if plain:
        raise InputError(
            f"{plain[0]}: nnU-Net image names end in a 4-digit channel, e.g. CASE_0000{image_suffix(plain[0])}"
        )
    if not groups:
        raise InputError(f"{root / 'imagesTr'}: no images found")
    n_channels = max(len(g) for g in groups.values())
    cases = []
    for case_id, images in groups.items():
        if len(images) != n_channels:
            raise InputError(
                f"{root / 'imagesTr'}: case '{case_id}' has channels {list(range(len(images)))}, expected "
                f"0..{n_channels - 1}"
            )
        label = _find_label(root / "labelsTr", case_id, image_suffix(images[0]))
        if label is None:
            raise InputError(
                f"{root / 'labelsTr'}: no label for case '{case_id}' (expected {case_id}{image_suffix(images[0])})"
            )
        cases.append(TrainingCase(case_id, images, label))
    return Dataset(cases, _labels(meta), _channels(meta, n_channels), root)


def _find_label(folder: Path, case_id: str, preferred_suffix: str) -> Path | None:
    if not folder.is_dir():
        return None
    exact = folder / f"{case_id}{preferred_suffix}"
    if exact.exists():
        return exact
    for f in sorted(folder.iterdir()):
        s = image_suffix(f)
        if s and f.name[: -len(s)] == case_id:
            return f
    return None


def _labels(meta: dict) -> dict[int, str]:
    raw = meta.get("labels") or {}
    out: dict[int, str] = {}
    for k, v in raw.items():
        if str(k).lstrip("-").isdigit():  # MSD / nnU-Net v1: {"0": "background"}
            out[int(k)] = str(v)
        elif isinstance(v, int):  # nnU-Net v2: {"background": 0}
            out[int(v)] = str(k)
    return dict(sorted(out.items()))


def _channels(meta: dict, n: int) -> list[str]:
    raw = meta.get("channel_names") or meta.get("modality") or {}
    names = [str(raw.get(str(i), f"channel{i}")) for i in range(n)]
    return names


def _load_csv(path: Path) -> Dataset:
    """A training manifest in :mod:`medseg.io.manifest`'s grammar; every case needs a label or a class."""
    from medseg.io.manifest import read_manifest

    manifest = read_manifest(path)
    rows = manifest.rows
    if not {"label", "reference", "class"} & set(manifest.columns):
        raise InputError(
            f"{path}: a training manifest needs a 'label' and/or a 'class' column; columns are {list(manifest.columns)}"
        )
    cases = []
    for row in rows:
        for column, f in [*((f"image{i + 1 if i else ''}", f) for i, f in enumerate(row.images)), ("label", row.label)]:
            if f is not None and not f.exists():
                raise InputError(f"{path}:{row.line}: {column} file {f} does not exist")
        cases.append(TrainingCase(row.case_id, list(row.images), row.label, row.klass))
    n = len(rows[0].images)
    channels = ["image"] if n == 1 else ["image", *(f"image{i}" for i in range(2, n + 1))]
    return Dataset(sorted(cases, key=lambda c: c.case_id), {}, channels, path)


def _load_dicom_folder(root: Path) -> Dataset:
    cases = []
    for sub in sorted(d for d in root.iterdir() if d.is_dir() and d.name not in ("labels", "labelsTr")):
        files = [f for f in sub.rglob("*") if f.is_file()]
        if not any(is_dicom_file(f) for f in files if not image_suffix(f)):
            continue
        label = next((f for f in sorted(sub.iterdir()) if f.name.startswith("label") and image_suffix(f)), None)
        label = (
            label
            or _find_label(root / "labels", sub.name, ".nii.gz")
            or _find_label(root / "labelsTr", sub.name, ".nii.gz")
        )
        if label is None:
            raise InputError(
                f"{sub}: DICOM case without a label file (expected {sub}/label.nii.gz or {root}/labels/{sub.name}.nii.gz)"
            )
        cases.append(TrainingCase(sub.name, [sub], label))
    if not cases:
        raise InputError(
            f"{root}: not a dataset: no imagesTr/ (nnU-Net layout) and no sub-folders with DICOM series; "
            "give a folder in nnU-Net layout, a folder of DICOM case folders, or a CSV manifest"
        )
    meta = json.loads((root / "dataset.json").read_text()) if (root / "dataset.json").exists() else {}
    return Dataset(cases, _labels(meta), _channels(meta, 1), root)
