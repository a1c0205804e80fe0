"""Content hashes of case inputs, and the fingerprint that decides whether a case is done."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from medseg.batch.cases import Case
from medseg.errors import InputError

_CHUNK = 1 << 20


def hash_file(path: Path) -> str:
    """SHA-256 of a file's bytes (hex).

    Raises:
        InputError: the file is missing or unreadable.
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise InputError(f"{path}: cannot read input: {exc.strerror or exc}") from exc
    return h.hexdigest()


def hash_input(path: Path) -> dict[str, Any]:
    """Hash one input: a file, or a folder (every non-hidden file, by relative path then content).

    Returns:
        ``{"name": file or folder name, "sha256": hex, "bytes": total size, "files": count,
        "location": hash of the absolute path}``; the name only, never the full path (folders may
        be named after patients): the location hash tells two inputs of one name apart.

    Raises:
        InputError: the path is missing or unreadable.
    """
    if path.is_dir():
        h = hashlib.sha256()
        total = n = 0
        for f in sorted(path.rglob("*")):
            rel = f.relative_to(path)
            if not f.is_file() or any(part.startswith(".") for part in rel.parts):
                continue
            h.update(rel.as_posix().encode("utf-8") + b"\0" + hash_file(f).encode("ascii"))
            total += f.stat().st_size
            n += 1
        if n == 0:
            raise InputError(f"{path}: input folder holds no files")
        return {"name": path.name, "sha256": h.hexdigest(), "bytes": total, "files": n, "location": _location(path)}
    if not path.exists():
        raise InputError(f"{path}: no such input file; check the manifest or the input folder")
    return {
        "name": path.name,
        "sha256": hash_file(path),
        "bytes": path.stat().st_size,
        "files": 1,
        "location": _location(path),
    }


def _location(path: Path) -> str:
    return hashlib.sha256(str(path.resolve()).encode("utf-8")).hexdigest()[:16]


def case_fingerprint(processor_fingerprint: str, inputs: list[dict[str, Any]], case: Case) -> str:
    """SHA-256 over the processor fingerprint, the medseg version, the input hashes and case options."""
    from medseg import __version__

    payload = {
        "processor": processor_fingerprint,
        "medseg": __version__,
        "inputs": [i["sha256"] for i in inputs],
        "extra": {k: str(v) for k, v in sorted(case.extra.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()
