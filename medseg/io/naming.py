"""File-name rules shared by every command: case ids and nnU-Net channel suffixes (one owner each).

A case id names output files (``out/<case_id>.nii.gz``, ``<case_id>.provenance.json``), so the
batch engine, the exporters and training all check ids with :func:`check_case_id`, and derive
them from file names with :func:`sanitize_case_id` and :func:`split_channel`.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from medseg.errors import InputError, OutputError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
IMAGE2D_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: Every image suffix medseg reads; volumes (3D) are NIfTI and ITK files.
SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES + IMAGE2D_SUFFIXES
VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES


def image_suffix(path: str | os.PathLike[str]) -> str:
    """The recognised image suffix of ``path`` (``".nii.gz"``, ``".nrrd"``, ...) or ``""``.

    A Slicer segmentation ``X.seg.nrrd`` is an ``".nrrd"`` file (that is how it is read); its
    name without suffix is :func:`file_stem`'s business.
    """
    name = Path(path).name.lower()
    return next((s for s in sorted(SUFFIXES, key=len, reverse=True) if name.endswith(s)), "")


def file_stem(path: str | os.PathLike[str]) -> str:
    """The file name without its image suffix: ``ct_001.nii.gz`` → ``ct_001``, ``ct_001.seg.nrrd`` and
    ``ct_001.seg.dcm`` (Slicer / dcmqi segmentations) and ``ct_001.rtstruct.dcm`` → ``ct_001`` (not
    ``ct_001.seg``); other files lose their last suffix."""
    name = Path(path).name
    for double in (".seg.nrrd", ".seg.dcm", ".rtstruct.dcm"):
        if name.lower().endswith(double):
            return name[: -len(double)]
    suffix = image_suffix(name)
    return name[: -len(suffix)] if suffix else Path(name).stem


#: Longest case id; longer names are shortened by :func:`sanitize_case_id` (with a hash, so they stay unique).
MAX_CASE_ID = 128
_CASE_ID = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_CASE_ID - 1}}}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
#: ``NAME_0000`` (nnU-Net / MSD channel naming: four-digit channel index after the case name).
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def check_case_id(case_id: object) -> str:
    """Return ``case_id`` if it can name output files, else raise :class:`OutputError`.

    Allowed: 1–128 letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit, without
    ``..``; so ``out_dir / f"{case_id}.nii.gz"`` always stays inside ``out_dir``.
    """
    if not isinstance(case_id, str) or not _CASE_ID.match(case_id) or ".." in case_id:
        raise OutputError(
            f"case id {case_id!r} cannot name output files: use 1-{MAX_CASE_ID} letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..' or path separators"
        )
    return case_id


def sanitize_case_id(name: str) -> str:
    """A valid case id (see :func:`check_case_id`) made from a file or folder name.

    Characters outside ``[A-Za-z0-9._-]`` and ``..`` become ``_``; leading ``.``, ``_`` and ``-`` are
    dropped; a name longer than 128 characters keeps its start and gets 8 hex digits of its hash,
    so two long names stay two ids.

    Raises:
        InputError: nothing usable is left (e.g. ``"..."``, ``"__"``).
    """
    cid = _UNSAFE.sub("_", name.strip())
    while ".." in cid:
        cid = cid.replace("..", "_")
    cid = cid.lstrip("._-")
    if len(cid) > MAX_CASE_ID:
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
        cid = f"{cid[: MAX_CASE_ID - 9]}-{digest}"
    if not cid:
        raise InputError(f"'{name}' cannot be used as a case id; rename the input so its name has letters or digits")
    return check_case_id(cid)


def split_channel(stem: str) -> tuple[str, int | None]:
    """``"CASE_0001"`` → ``("CASE", 1)``; a stem without a 4-digit channel suffix → ``(stem, None)``."""
    m = _CHANNEL.match(stem)
    return (m["case"], int(m["channel"])) if m else (stem, None)


def group_channels(files: list[Path], where: object) -> tuple[dict[str, list[Path]], list[Path]]:
    """Group image files by case: ``NAME_0000.nii.gz``, ``NAME_0001.nii.gz`` → ``{"NAME": [both]}``.

    The one rule for channel files (case discovery for ``predict`` and nnU-Net datasets for training):
    channels are numbered 0000, 0001, ... without gaps.

    Returns:
        ``(cases, plain)``: channel files per case name in index order, and the files without a channel suffix.

    Raises:
        InputError: a case whose channel numbers have a gap (names the missing files and ``where``).
    """
    indexed: dict[str, dict[int, Path]] = {}
    plain: list[Path] = []
    for f in files:
        name, channel = split_channel(file_stem(f))
        if channel is None:
            plain.append(f)
        else:
            indexed.setdefault(name, {})[channel] = f
    cases: dict[str, list[Path]] = {}
    for name, by_index in sorted(indexed.items()):
        indices = sorted(by_index)
        if indices != list(range(len(indices))):
            missing = sorted(set(range(indices[-1] + 1)) - set(indices))
            raise InputError(
                f"{where}: case '{name}' has channels {', '.join(f'{i:04d}' for i in indices)} but lacks "
                f"{', '.join(f'{name}_{i:04d}' for i in missing)}; channel files must be numbered 0000, 0001, ... "
                "without gaps"
            )
        cases[name] = [by_index[i] for i in indices]
    return cases, plain
