"""Where the voxel data of an MHA/MHD or NRRD file lies and how it is encoded, read from the text header.

SimpleITK allocates the whole image from the header's sizes before it reads a byte of data, so
a header declaring 1000³ voxels in a 200-byte file would cost gigabytes before any error. This
module reads just enough of the header (the data file, its offset and encoding) for
:func:`medseg.io.checks.check_stored_size` to compare the declared size with the bytes present.
Only the keys that locate the data are read; SimpleITK parses the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from medseg.io.checks import Encoding

#: Most header bytes read (a header beyond this is left to SimpleITK, unchecked).
_HEADER_LIMIT = 1 << 20


@dataclass(frozen=True)
class StoredData:
    """The voxel data of an image file as stored on disk.

    Attributes:
        file: the file holding the data (the image itself, or a detached ``.raw``/``.zraw``).
        offset: where the data starts in ``file``, in bytes; ``None`` when it is counted from the end.
        encoding: ``raw``, ``compressed``, ``text`` or ``hex``.
        stored: bytes of ``file`` available for the data, in bytes.
        compressed_size: compressed data size the header states (MetaImage ``CompressedDataSize``), in bytes.
    """

    file: Path
    offset: int | None
    encoding: Encoding
    stored: int
    compressed_size: int | None = None


def stored_data(path: Path) -> StoredData | None:
    """The data of the MHA/MHD/NRRD/NHDR file ``path``; None when it cannot be located this way
    (other formats, data split over a list of files, a header this module does not understand)."""
    suffix = path.suffix.lower()
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEADER_LIMIT)
    except OSError:
        return None
    if suffix in (".mha", ".mhd"):
        return _metaimage(path, head)
    if suffix in (".nrrd", ".nhdr") or head.startswith(b"NRRD"):
        return _nrrd(path, head)
    return None


def _located(header: Path, name: str, offset: int | None, encoding: Encoding, start: int = 0) -> StoredData | None:
    """The StoredData of data ``name`` (``LOCAL``: in ``header`` from byte ``start``), or None for lists/patterns.

    A detached data file that is missing is reported with size 0, so the check says it has no data.
    """
    if name.upper() == "LOCAL" or not name:
        file, base = header, start
    elif name.upper().startswith("LIST") or "%" in name or " " in name.strip():
        return None  # one file per slice: left to SimpleITK
    else:
        file, base = header.parent / name, 0
    try:
        size = file.stat().st_size
    except (OSError, ValueError):  # missing, unreadable, or a name no file can have (NUL byte)
        size = 0
    begin = base + (offset or 0)
    return StoredData(file, None if offset is None else begin, encoding, max(size - begin, 0))


def _metaimage(path: Path, head: bytes) -> StoredData | None:
    keys: dict[str, str] = {}
    position = 0
    for line in head.splitlines(keepends=True):
        position += len(line)
        key, sep, value = line.decode("latin-1").partition("=")
        if not sep:
            continue
        keys[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            break
    else:
        return None  # no ElementDataFile within the limit
    if keys.get("binarydata", "true").lower() not in ("true", "1"):
        encoding: Encoding = "text"
    elif keys.get("compresseddata", "false").lower() in ("true", "1"):
        encoding = "compressed"
    else:
        encoding = "raw"
    header_size = _integer(keys.get("headersize", "0"))
    if header_size is None:
        return None
    offset = None if header_size < 0 else header_size
    found = _located(path, keys["elementdatafile"], offset, encoding, start=position)
    compressed_size = _integer(keys.get("compresseddatasize", ""))
    if found is None or encoding != "compressed" or compressed_size is None or compressed_size < 0:
        return found
    return StoredData(found.file, found.offset, encoding, found.stored, compressed_size)


def _integer(text: str) -> int | None:
    """``text`` as a plain decimal integer (``-1``, ``42``), else None."""
    text = text.strip()
    if not re.fullmatch(r"-?[0-9]{1,18}", text):
        return None
    return int(text)


_NRRD_ENCODINGS: dict[str, Encoding] = {
    "raw": "raw",
    "txt": "text",
    "text": "text",
    "ascii": "text",
    "hex": "hex",
    "gz": "compressed",
    "gzip": "compressed",
    "bz2": "compressed",
    "bzip2": "compressed",
}


def _nrrd(path: Path, head: bytes) -> StoredData | None:
    end = head.find(b"\n\n")
    crlf = head.find(b"\r\n\r\n")
    if crlf != -1 and (end == -1 or crlf < end):
        end, gap = crlf, 4
    else:
        gap = 2
    text = head if end == -1 else head[:end]
    fields: dict[str, str] = {}
    for line in text.decode("latin-1").splitlines()[1:]:
        if line.startswith("#") or ":=" in line.split(": ", 1)[0]:
            continue  # comments and key/value pairs
        key, sep, value = line.partition(": ")
        if sep:
            fields[key.strip().lower()] = value.strip()
    encoding = _NRRD_ENCODINGS.get(fields.get("encoding", "raw").lower())
    data_file = fields.get("data file", fields.get("datafile", ""))
    if encoding is None or (end == -1 and not data_file) or fields.get("line skip", "0") != "0":
        return None
    skip = _integer(fields.get("byte skip", "0"))
    if skip is None:
        return None
    offset = None if skip < 0 else skip
    if encoding == "compressed" and skip:
        return None  # byte skip counts decompressed bytes here
    return _located(path, data_file, offset, encoding, start=end + gap)
