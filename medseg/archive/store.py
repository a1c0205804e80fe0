"""Writing received DICOM instances into a series folder: one file per SOPInstanceUID, atomically."""

from __future__ import annotations

import re
from pathlib import Path

import pydicom

from medseg.io.atomic import atomic_path

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
    with atomic_path(target) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return target
