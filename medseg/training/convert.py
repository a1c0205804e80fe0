"""Write a dataset (e.g. a clinical DICOM export) in nnU-Net layout, converting each case once.

``DatasetNNN_Name/imagesTr/CASE_0000.nii.gz`` (the image as read, exact affine),
``labelsTr/CASE.nii.gz`` (the labels rasterised on the image's grid), ``dataset.json``
(channel names, labels as ``{name: value}``, ``numTraining``, ``file_ending``).

Converted cases are cached by content: ``medseg_convert.json`` records, per case, the
SHA-256 of the bytes of every file under its image folder (or of its image files), of its
label file and of the label mapping; a case whose hash and outputs are unchanged is not
read again. Files are written atomically and the record after each case, so an
interrupted conversion resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError
from medseg.io import write, write_text_atomic
from medseg.training.cache import read_case
from medseg.training.dataset import Dataset, TrainingCase

log = logging.getLogger(__name__)

CONVERT_VERSION = 1
RECORD = "medseg_convert.json"
_NNUNET_NAME = re.compile(r"^Dataset\d{3}_[A-Za-z0-9_-]+$")


@dataclass
class ConvertReport:
    """What a conversion did: cases written, reused from an earlier run, removed (no longer in the
    source), and left out (one line each)."""

    converted: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def content_hash(case: TrainingCase) -> str:
    """SHA-256 of the case's input bytes (image files or every file under its image folder, label file) and mapping."""
    h = hashlib.sha256(f"v{CONVERT_VERSION}|{case.series_uid}|{sorted((case.label_names or {}).items())}".encode())
    paths = [*case.images, *([case.label] if case.label else [])]
    for p in paths:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
    return h.hexdigest()


def convert_to_nnunet(dataset: Dataset, out: str | Path) -> ConvertReport:
    """Write ``dataset`` to ``out`` (a ``DatasetNNN_Name`` folder) in nnU-Net layout; see the module docstring.

    Raises:
        ConfigError: ``out`` is not named ``DatasetNNN_Name``.
    """
    root = Path(out)
    if not _NNUNET_NAME.match(root.name):
        raise ConfigError(
            f"{root}: nnU-Net datasets are folders named DatasetNNN_Name (three digits, e.g. Dataset501_Liver); "
            "choose such a name with -o"
        )
    record_path = root / RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    done: dict[str, dict] = record.get("cases", {}) if record.get("version") == CONVERT_VERSION else {}
    report = ConvertReport(skipped=list(dataset.skipped))
    for gone in sorted(set(done) - {c.case_id for c in dataset.cases}):  # written by an earlier run: ours to remove
        for f in (root / "imagesTr" / f"{gone}_0000.nii.gz", root / "labelsTr" / f"{gone}.nii.gz"):
            f.unlink(missing_ok=True)
        del done[gone]
        report.removed.append(gone)
    for case in dataset.cases:
        digest = content_hash(case)
        image_path = root / "imagesTr" / f"{case.case_id}_0000.nii.gz"
        label_path = root / "labelsTr" / f"{case.case_id}.nii.gz"
        if done.get(case.case_id, {}).get("hash") == digest and image_path.is_file() and label_path.is_file():
            report.reused.append(case.case_id)
            continue
        image, label = read_case(case)
        if label is None:
            report.skipped.append(f"{case.case_id}: no label; skipped")
            continue
        lab = label.numpy()
        write(image, image_path)
        write(label.replace(array=lab.astype(np.uint8 if lab.max() < 256 else np.uint16)), label_path)
        done[case.case_id] = {"hash": digest, "images": [str(p) for p in case.images], "label": str(case.label)}
        report.converted.append(case.case_id)
        _write_record(record_path, done, report)
        log.info("%s: converted", case.case_id)
    _write_record(record_path, done, report)
    cases = sorted(report.converted + report.reused)
    meta: dict[str, Any] = {
        "name": root.name.split("_", 1)[1],
        "description": f"converted by medseg from {dataset.source}",
        "channel_names": {str(i): name for i, name in enumerate(dataset.channels or ["image"])},
        "labels": {name: int(value) for value, name in sorted(dataset.labels.items())},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
    }
    if 0 not in dataset.labels:
        meta["labels"] = {"background": 0, **meta["labels"]}
    write_text_atomic(root / "dataset.json", json.dumps(meta, indent=2) + "\n")
    return report


def _write_record(path: Path, done: dict[str, dict], report: ConvertReport) -> None:
    data = {"version": CONVERT_VERSION, "cases": done, "skipped": report.skipped}
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")
