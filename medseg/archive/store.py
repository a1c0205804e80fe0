"""Writing received DICOM instances into a series folder: one file per SOPInstanceUID, atomically."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pydicom

from medseg.errors import OutputError

#: Suffix of an instance being written (renamed into place when complete; removed when left by a crash).
PARTIAL_SUFFIX = ".receiving"

_SAFE = re.compile(r"[^0-9A-Za-z._-]")


def uid_name(uid: str) -> str:
    """A UID as a file or folder name (UIDs are digits and dots; anything else becomes ``_``)."""
    name = _SAFE.sub("_", uid.strip()) or "unknown"
    return "_" + name if name.startswith(".") else name


def write_instance(ds: pydicom.Dataset, folder: Path) -> Path:
    """Write ``ds`` as ``folder/<SOPInstanceUID>.dcm`` (temp file + rename), with a file meta header.

    Returns:
        The path written; an instance received twice replaces its earlier copy.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        meta = pydicom.dataset.FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.file_meta = meta
    target = folder / f"{uid_name(str(ds.SOPInstanceUID))}.dcm"
    return _write_atomic(target, lambda tmp: ds.save_as(tmp, enforce_file_format=True))


def write_encoded(data: bytes, folder: Path, sop_instance_uid: str) -> Path:
    """Write an instance as received (DICOM file format bytes, e.g. pynetdicom's ``event.encoded_dataset()``)
    to ``folder/<SOPInstanceUID>.dcm`` atomically, without decoding and encoding it again.

    Returns:
        The path written; an instance received twice replaces its earlier copy.
    """
    folder.mkdir(parents=True, exist_ok=True)
    return _write_atomic(folder / f"{uid_name(sop_instance_uid)}.dcm", lambda tmp: tmp.write_bytes(data))


def _write_atomic(target: Path, write: Callable[[Path], object]) -> Path:
    # own temp name (not medseg.io.atomic's): a batch starting meanwhile removes stale batch temps, not these
    tmp = target.parent / f".{target.name}.{os.getpid()}-{threading.get_ident()}{PARTIAL_SUFFIX}"
    try:
        write(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"{target}: could not write a received instance: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def remove_partial(folder: Path) -> int:
    """Remove instances a killed process left half-written under ``folder``; returns how many."""
    n = 0
    for p in folder.rglob(f".*{PARTIAL_SUFFIX}"):
        p.unlink(missing_ok=True)
        n += 1
    return n
