"""Refuse datasets the planner cannot plan: empty, one case, unlabelled cases, a dataset.json that lies.

:func:`open_dataset` wraps :func:`medseg.training.load_dataset` (whatever ``medseg train
--data`` accepts) with the checks nnU-Net's ``verify_dataset_integrity`` makes on
``dataset.json``, each a one-line :class:`~medseg.errors.InputError` that names the file and
the fix. Per-case checks that need the pixels (label values, channel counts, grids) happen
while fingerprinting.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medseg.errors import InputError
from medseg.io import image_suffix
from medseg.io.roi_names import LabelNames
from medseg.training.dataset import Dataset, load_dataset


def read_dataset_json(root: Path) -> dict[str, Any]:
    """``root/dataset.json`` as a dict (``{}`` when absent).

    Raises:
        InputError: the file is not valid JSON or not an object.
    """
    path = root / "dataset.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise InputError(f"{path}: expected a JSON object with channel_names, labels, file_ending")
    return meta


def _check_file_ending(root: Path, meta: dict[str, Any]) -> None:
    ending = meta.get("file_ending")
    folder = root / "imagesTr"
    if not ending or not folder.is_dir():
        return
    images = [f.name for f in folder.iterdir() if image_suffix(f) and not f.name.startswith(".")]
    if images and not any(name.endswith(ending) for name in images):
        found = sorted({image_suffix(n) for n in images})
        raise InputError(
            f"{root / 'dataset.json'}: file_ending is {ending!r} but {folder} holds {', '.join(found)} files "
            f'(e.g. {sorted(images)[0]}); set "file_ending": "{found[0]}" in dataset.json'
        )


def _check_counts(root: Path, meta: dict[str, Any], dataset: Dataset) -> None:
    where = root / "dataset.json"
    declared = meta.get("numTraining")
    if declared is not None and int(declared) != len(dataset):
        raise InputError(
            f"{where}: numTraining is {declared} but {len(dataset)} labelled cases were found in "
            f'{root / "imagesTr"}; set "numTraining": {len(dataset)} or add the missing cases'
        )
    names = meta.get("channel_names") or meta.get("modality")
    n_files = len(dataset.cases[0].images) if dataset.cases else 0
    if isinstance(names, dict) and names and len(names) != n_files:
        raise InputError(
            f"{where}: channel_names declares {len(names)} channels ({', '.join(map(str, names.values()))}) "
            f"but each case has {n_files} image file(s) (_0000{'..' if n_files > 1 else ''}"
            f"{f'_{n_files - 1:04d}' if n_files > 1 else ''}); make channel_names match the files"
        )


def open_dataset(path: str | os.PathLike[str] | Dataset, labels: LabelNames | None = None) -> Dataset:
    """Load a training dataset for planning and check it can be planned.

    Args:
        path: an nnU-Net/MSD folder, a CSV manifest, a folder of DICOM cases, or a Dataset.
        labels: ``{value: [name, synonym, "PATTERN*"]}`` for RTSTRUCT/SEG labels (``--labels FILE``).

    Raises:
        InputError: no cases, a single case (cross-validation and dataset statistics need
            at least two), a case without a label file, or a ``dataset.json`` whose
            ``file_ending``, ``numTraining`` or ``channel_names`` disagree with the files.
    """
    if isinstance(path, Dataset):
        dataset = path
        root = dataset.source
    else:
        root = Path(path)
        if root.is_dir():
            _check_file_ending(root, read_dataset_json(root))
        dataset = load_dataset(root, labels=labels)
    where = root if root is not None else "dataset"
    if len(dataset) == 0:
        raise InputError(f"{where}: the dataset has no cases; add labelled cases (imagesTr/labelsTr or CSV rows)")
    unlabelled = [c.case_id for c in dataset.cases if c.label is None]
    if unlabelled:
        shown = ", ".join(unlabelled[:5]) + (" ..." if len(unlabelled) > 5 else "")
        raise InputError(
            f"{where}: {len(unlabelled)} of {len(dataset)} cases have no label file ({shown}); planning needs a "
            "label map for every training case: add them (CSV column 'label') or remove those rows"
        )
    if len(dataset) < 2:
        raise InputError(
            f"{where}: only one case ('{dataset.cases[0].case_id}'); planning needs at least 2 labelled cases "
            "(dataset statistics and cross-validation); add cases"
        )
    if root is not None and Path(root).is_dir() and (Path(root) / "imagesTr").is_dir():
        _check_counts(Path(root), read_dataset_json(Path(root)), dataset)
    return dataset
