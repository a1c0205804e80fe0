"""Training cases from clinical DICOM exports: image series with the RTSTRUCT or SEG objects that reference them.

A clinical export (PACS, treatment-planning system) is a folder tree of patients/studies/series
in any layout. Every image series referenced by an RTSTRUCT or SEG becomes a case; the object is
matched to its series through the UIDs it records (ReferencedSeriesSequence /
RTReferencedSeriesSequence, else the referenced SOP instances), never through folder names.

ROI/segment names map to label values through ``labels`` (a pipeline's ``input.labels`` with
synonyms and patterns, :mod:`medseg.io.roi_names`). Case ids are the PatientIDs
(``PATIENT_<8 hex of the SeriesInstanceUID>`` for a patient with several labelled series). A
case whose object lacks a wanted ROI (or holds it without contours), matches one ambiguously, or whose series is referenced by
several objects, is left out with one line in ``Dataset.skipped`` (and an InputWarning); the
other cases go on. Labels are rasterised on the image series' grid when cases are cached
(:func:`medseg.io.read_label`).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pydicom

from medseg.errors import ConfigError, DicomError, InputError, InputWarning
from medseg.io import find_series
from medseg.io.clinical import LabelObject, file_label_kind, label_object
from medseg.io.dicom import SeriesInfo
from medseg.io.roi_names import LabelNames, match_names
from medseg.training.dataset import Dataset, TrainingCase

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


#: at most this many ROI names are listed when the labels are missing.
_NAMES_SHOWN = 40


def _need_labels(where: Path, labels: LabelNames | None, objects: list[LabelObject]) -> LabelNames:
    """``labels``, or a ConfigError listing the ROI/segment names of ``objects`` with how many patients carry each."""
    if labels is not None:
        return labels
    patients: dict[str, set[str]] = defaultdict(set)
    for obj in objects:
        for name in obj.names:
            patients[name.strip()].add(obj.patient_id or str(obj.path))
    ranked = sorted(patients.items(), key=lambda t: (-len(t[1]), t[0]))
    found = ", ".join(
        f"{name} ({len(ids)}{' patients' if i == 0 else ''})" for i, (name, ids) in enumerate(ranked[:_NAMES_SHOWN])
    )
    more = f" and {len(ranked) - _NAMES_SHOWN} more" if len(ranked) > _NAMES_SHOWN else ""
    raise ConfigError(
        f"{where}: RTSTRUCT/SEG labels need the names of the ROIs to learn; ROIs found: {found or 'none'}{more} — "
        "write them into a labels file (e.g. 1: [liver, Liver, 'LIVER*']) and pass --labels FILE, or set "
        "input.labels in the pipeline"
    )


def load_dicom_export(root: Path, labels: LabelNames | None) -> Dataset:
    """Cases from a DICOM folder tree holding image series and RTSTRUCT/SEG objects that reference them.

    Raises:
        InputError: no DICOM, no RTSTRUCT/SEG, or no usable case (the first reasons are named).
        ConfigError: ``labels`` is missing.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        try:
            series = find_series(root)
        except DicomError as exc:
            raise InputError(
                f"{root}: not a dataset: no imagesTr/ (nnU-Net layout), no case folders with label files and no "
                f"DICOM export ({exc}); give a folder in one of these layouts or a CSV manifest"
            ) from exc
    for w in caught:  # unreadable files were skipped: say so once each
        warnings.warn(w.message, w.category, stacklevel=2)
    images = {s.uid: s for s in series if s.is_image}
    objects = _label_objects(series)
    if not objects:
        raise InputError(
            f"{root}: {len(images)} image series but no RTSTRUCT or SEG object and no label files; a DICOM dataset "
            "needs one RTSTRUCT/SEG per image series (or label.nii.gz files in one folder per case)"
        )
    spec = _need_labels(root, labels, objects)
    skipped: list[str] = []
    by_series: dict[str, list[LabelObject]] = defaultdict(list)
    for obj in objects:
        uid = _referenced_image_series(obj, images)
        if uid is None:
            refs = ", ".join(obj.referenced_series) or "none recorded"
            skipped.append(f"{obj.path}: references image series {refs}, which is not under {root}; skipped")
        else:
            by_series[uid].append(obj)
    cases: list[TrainingCase] = []
    case_ids = _case_ids(by_series)
    for uid, objs in sorted(by_series.items(), key=lambda t: case_ids[t[0]]):
        info = images[uid]
        case_id = case_ids[uid]
        usable = [o for o in objs if not _problems(o, spec)]
        if len(usable) != 1:
            skipped.append(_why_not(case_id, objs, usable, spec))
            continue
        cases.append(
            TrainingCase(case_id, [_series_folder(info)], usable[0].path, series_uid=uid, label_names=_plain(spec))
        )
    return _finish(root, cases, skipped, spec, [images[c.series_uid].modality for c in cases if c.series_uid])


def with_label_objects(dataset: Dataset, labels: LabelNames | None) -> Dataset:
    """Check the RTSTRUCT/SEG labels of a (CSV) dataset: cases missing a wanted ROI are left out and listed."""
    kept: list[TrainingCase] = []
    skipped = list(dataset.skipped)
    objects: dict[str, LabelObject | None] = {}
    for case in dataset.cases:
        if case.label is not None and file_label_kind(case.label, force=case.label.suffix.lower() == ".dcm"):
            objects[case.case_id] = label_object(case.label, force=case.label.suffix.lower() == ".dcm")
    if not objects:
        return dataset
    spec = _need_labels(dataset.source or Path("."), labels, [o for o in objects.values() if o is not None])
    for case in dataset.cases:
        if case.case_id not in objects:
            kept.append(case)
            continue
        obj = objects[case.case_id]
        if obj is None:  # unreadable after all: reading the case reports it
            kept.append(case)
            continue
        problems = _problems(obj, spec)
        if problems:
            skipped.append(f"{case.case_id}: {obj.path}: {'; '.join(problems)}; skipped")
            continue
        in_folder, series_uid = _image_series_uid(case, obj)
        if not in_folder:
            skipped.append(
                f"{case.case_id}: {obj.path}: references series {', '.join(obj.referenced_series)}, which is not in "
                f"{case.images[0]}; skipped"
            )
            continue
        kept.append(replace(case, series_uid=series_uid, label_names=_plain(spec)))
    return _finish(dataset.source or Path("."), kept, skipped, spec, list(dataset.channels), dataset)


def _finish(
    root: Path,
    cases: list[TrainingCase],
    skipped: list[str],
    spec: LabelNames,
    modalities: list[str],
    base: Dataset | None = None,
) -> Dataset:
    for line in skipped:
        warnings.warn(line, InputWarning, stacklevel=3)
    if not cases:
        first = "; ".join(skipped[:3]) + (f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else "")
        raise InputError(f"{root}: no usable case ({len(skipped)} skipped: {first})")
    names = {0: "background", **{int(v): str(n[0]) for v, n in sorted(spec.items())}}
    if base is not None:
        return Dataset(sorted(cases, key=lambda c: c.case_id), names, base.channels, base.source, skipped)
    channels = [max(set(modalities), key=modalities.count)] if modalities else ["image"]
    return Dataset(sorted(cases, key=lambda c: c.case_id), names, channels, root, skipped)


def _case_ids(by_series: dict[str, list[LabelObject]]) -> dict[str, str]:
    """Case ids from the PatientID; a patient with several labelled series gets ``PATIENT_<8 hex of the series UID>``.

    The ids do not depend on folder names or on the order of files, so caches and splits stay valid.
    """
    patient = {uid: _UNSAFE.sub("_", objs[0].patient_id).strip("._-") for uid, objs in by_series.items()}
    count: dict[str, int] = defaultdict(int)
    for p in patient.values():
        count[p] += 1
    out = {}
    for uid, p in patient.items():
        tag = hashlib.sha1(uid.encode()).hexdigest()[:8]
        out[uid] = p if p and count[p] == 1 else f"{p or 'series'}_{tag}"
    return out


def _label_objects(series: list[SeriesInfo]) -> list[LabelObject]:
    out = []
    for s in series:
        if s.is_image or not (s.references or s.names):
            continue
        for f in s.files:
            try:
                obj = label_object(f)
            except DicomError as exc:
                warnings.warn(f"{exc}; skipped", InputWarning, stacklevel=3)
                continue
            if obj is not None:
                out.append(obj)
    return sorted(out, key=lambda o: str(o.path))


def _referenced_image_series(obj: LabelObject, images: dict[str, SeriesInfo]) -> str | None:
    for uid in obj.referenced_series:
        if uid in images:
            return uid
    if obj.referenced_instances:  # no usable series UID: look for the instances themselves
        wanted = set(obj.referenced_instances)
        for uid, info in images.items():
            if wanted & set(_sop_uids(info.files)):
                return uid
    return None


def _sop_uids(files: tuple[Path, ...]) -> list[str]:
    return [
        str(pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID) for f in files
    ]


def _problems(obj: LabelObject, spec: LabelNames) -> list[str]:
    """What keeps ``obj`` from giving every wanted label: missing, empty or ambiguous ROIs."""
    m = match_names(obj.names, spec)
    out = m.problems(spec)
    for value, i in m.index_of.items():
        if obj.names[i] in obj.empty:
            out.append(f"ROI {obj.names[i]!r} for label {value} has no contours")
    return out


def _why_not(case_id: str, objs: list[LabelObject], usable: list[LabelObject], spec: LabelNames) -> str:
    if len(usable) > 1:
        files = ", ".join(str(o.path) for o in usable)
        return f"{case_id}: {len(usable)} RTSTRUCT/SEG objects reference its series and all hold the labels ({files}); keep one; skipped"
    lines = [f"{o.path}: {'; '.join(_problems(o, spec))}" for o in objs]
    return f"{case_id}: {' | '.join(lines)}; skipped"


def _series_folder(info: SeriesInfo) -> Path:
    """The deepest folder holding every file of the series (read with its series UID)."""
    parents = [f.parent.resolve() for f in info.files]
    common = parents[0]
    while not all(p == common or common in p.parents for p in parents):
        common = common.parent
    return common


def _image_series_uid(case: TrainingCase, obj: LabelObject) -> tuple[bool, str | None]:
    """``(found, series UID)``: the referenced series when the case's image is a DICOM folder holding it;
    ``found`` is False when the folder lacks every series the object references."""
    image = case.images[0]
    if not image.is_dir():
        return True, None  # an image file (NIfTI, one DICOM file): rasterised by geometry on its grid
    uids = {s.uid for s in find_series(image) if s.is_image}
    hit = [u for u in obj.referenced_series if u in uids]
    if hit:
        return True, hit[0]
    return not obj.referenced_series, None


def _plain(spec: LabelNames) -> dict[int, list[str]]:
    return {int(v): [str(n) for n in names] for v, names in spec.items()}
