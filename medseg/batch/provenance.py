"""Per-case provenance sidecars: what went in, what ran, what came out; also the "done" marker.

A case is done iff ``<out_dir>/<case_id>.provenance.json`` exists, records the current
fingerprint, and every output it lists exists. The sidecar is written last, after the
outputs, so a run killed in between leaves the case "not done" and it is run again.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

from medseg.io import write_text_atomic

logger = logging.getLogger(__name__)

#: Version of the sidecar layout; bump when fields change meaning.
SCHEMA = 1
SUFFIX = ".provenance.json"


def provenance_path(out_dir: Path, case_id: str) -> Path:
    """Where the sidecar of ``case_id`` lives: ``out_dir / f"{case_id}.provenance.json"``."""
    return out_dir / f"{case_id}{SUFFIX}"


def read_provenance(out_dir: Path, case_id: str) -> dict[str, Any] | None:
    """The sidecar of ``case_id``, or None when missing or unreadable (then the case is not done)."""
    path = provenance_path(out_dir, case_id)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("%s: unreadable provenance (%s); the case will run again", path.name, exc)
        return None
    return data if isinstance(data, dict) else None


def output_record(out_dir: Path, rel: str) -> dict[str, Any]:
    """``{"path": rel, "bytes": size, "sha256": hex}`` of an output, as the sidecar records it."""
    from medseg.batch.fingerprint import hash_file

    path = out_dir / rel
    return {"path": rel, "bytes": path.stat().st_size, "sha256": hash_file(path)}


def _changed(out_dir: Path, entry: Any) -> str:
    """Why a recorded output cannot be reused (``""`` when it is the file that was written)."""
    from medseg.batch.fingerprint import hash_file

    rel = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(rel, str):
        return "an output entry without a path"
    path = out_dir / rel
    if not path.is_file():
        return f"{rel} is missing"
    if "sha256" not in entry or "bytes" not in entry:
        return f"{rel} has no recorded checksum (written by an older medseg)"
    if path.stat().st_size != entry["bytes"]:
        return f"{rel} has {path.stat().st_size} bytes, {entry['bytes']} were written (truncated or replaced)"
    if hash_file(path) != entry["sha256"]:
        return f"{rel} differs from what was written (SHA-256 changed)"
    return ""


def is_done(out_dir: Path, case_id: str, fingerprint: str) -> dict[str, Any] | None:
    """The sidecar when the case is done with this ``fingerprint`` and every output it lists is still the
    file that was written (size and SHA-256), else None; a changed output is logged and the case re-runs."""
    record = read_provenance(out_dir, case_id)
    if record is None or record.get("schema") != SCHEMA or record.get("fingerprint") != fingerprint:
        return None
    outputs = record.get("outputs")
    if not isinstance(outputs, dict):
        return None
    for entry in outputs.values():
        why = _changed(out_dir, entry)
        if why:
            logger.warning("case %s: %s; running it again", case_id, why)
            return None
    return record


def write_provenance(out_dir: Path, case_id: str, record: Mapping[str, Any]) -> Path:
    """Write the sidecar atomically (call it after every output is in place)."""
    body = {"schema": SCHEMA, "case_id": case_id, **record}
    return write_text_atomic(provenance_path(out_dir, case_id), json.dumps(body, indent=2, sort_keys=True) + "\n")


def now_iso() -> str:
    """The current UTC time as ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@cache
def environment() -> dict[str, Any]:
    """Versions of medseg, Python and the main libraries, the platform and the host name."""
    import nibabel
    import numpy
    import pydicom
    import SimpleITK
    import torch

    from medseg import __version__

    return {
        "medseg": __version__,
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "nibabel": nibabel.__version__,
        "pydicom": pydicom.__version__,
        "SimpleITK": SimpleITK.Version.VersionString(),
        "platform": platform.platform(),
        "host": platform.node(),
    }


def default_device() -> str:
    """The device the process would use: ``cuda:N (name)`` or ``cpu``."""
    import torch

    if torch.cuda.is_available():
        i = torch.cuda.current_device()
        return f"cuda:{i} ({torch.cuda.get_device_name(i)})"
    return "cpu"
