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
import re
from collections.abc import Sequence
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


#: A CT has air (about -1000 HU) around the body; a "CT" none of whose voxels is below this is not one
#: (an MR, or a CT whose rescale was never applied).
CT_AIR_BELOW_HU = -50.0
_GENERIC_CHANNEL = re.compile(r"channel\d+")


def _where(dataset: Dataset) -> str:
    if dataset.source is None:
        return "dataset"
    root = Path(dataset.source)
    return str(root / "dataset.json") if (root / "dataset.json").is_file() else str(root)


def _listed(ids: Sequence[str]) -> str:
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def check_declared_channels(dataset: Dataset, cases: list[dict[str, Any]], n_channels: int) -> None:
    """Refuse images whose channel count differs from the channels the dataset declares.

    A 4D file of three volumes in a dataset declaring one channel (``T1``) is not planned as three
    unnamed channels.

    Raises:
        InputError: the declared names (dataset.json ``channel_names``) count differently.
    """
    declared = list(dataset.channels)
    if not declared or n_channels == len(declared) or all(_GENERIC_CHANNEL.fullmatch(n) for n in declared):
        return
    raise InputError(
        f"{_where(dataset)}: declares {len(declared)} channel(s) ({', '.join(declared)}) but the images hold "
        f"{n_channels} ({_listed([c['case_id'] for c in cases])}: a 4D file holds one volume per channel); split "
        f"each 4D image into NAME_0000, NAME_0001, ... files, or declare {n_channels} channels in channel_names"
    )


def check_declared_modality(dataset: Dataset, cases: list[dict[str, Any]], names: Sequence[str]) -> str:
    """Cases that contradict a channel declared CT: refused by DICOM Modality, flagged by intensities.

    Returns:
        ``""``, or one line naming the cases of a CT channel without any voxel below
        :data:`CT_AIR_BELOW_HU` (an MR, or a CT whose rescale was never applied) and the fix;
        ``medseg plan`` prints it and the fingerprint keeps it under ``flags``.

    Raises:
        InputError: a DICOM case of another Modality in a channel declared CT.
    """
    for ch, name in enumerate(names):
        if name.strip().upper() != "CT":
            continue
        other = [f"{c['case_id']} ({c['dicom_modality']})" for c in cases if c.get("dicom_modality") not in ("", "CT")]
        if other:
            raise InputError(
                f"{_where(dataset)}: channel {ch} is declared CT but DICOM says otherwise for {_listed(other)}; "
                "remove those cases or fix channel_names"
            )
        no_air = [c["case_id"] for c in cases if c["image_min"][ch] >= CT_AIR_BELOW_HU]
        if no_air:
            which = "every case" if len(no_air) == len(cases) else f"{len(no_air)} of {len(cases)} cases"
            return (
                f"{_where(dataset)}: channel {ch} is declared CT but {which} ({_listed(no_air)}) have no voxel below "
                f"{CT_AIR_BELOW_HU:g} HU (CT has air at -1000 HU): they look like MR or CT without its rescale and are "
                "normalised as CT; check them, remove them, or fix channel_names"
            )
    return ""
