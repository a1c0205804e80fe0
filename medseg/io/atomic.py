"""Atomic file writing: write to a temporary name in the target folder, then rename."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

from medseg.errors import OutputError

logger = logging.getLogger(__name__)

#: The temporary names :func:`atomic_path` uses: ``.NAME.<8 hex>.tmp[SUFFIX]``.
TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp(\.[A-Za-z0-9.]+)?$")


def _suffix(path: Path) -> str:
    name = path.name
    for multi in (".nii.gz", ".seg.nrrd", ".tar.gz"):
        if name.lower().endswith(multi):
            return name[-len(multi) :]
    return path.suffix


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary name keeps the suffix (writers pick the format from it) and starts
    with a dot, so a crash never leaves a file under the final name: either the old
    content or the complete new one is there. On any error the temporary file is removed.

    Raises:
        OutputError: the folder cannot be created or the disk is full.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{final.parent}: cannot create output folder: {exc.strerror or exc}") from exc
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp{_suffix(final)}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, final)
    except OSError as exc:
        raise OutputError(f"{final}: could not write: {exc.strerror or exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the final path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the final path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files an interrupted writer (kill -9, power loss) left in ``folder`` and below.

    Call it only while no other process writes there (under the folder's exclusive lock,
    :func:`medseg.io.lock.folder_lock`): a temporary file of a live writer would be removed too.

    Returns:
        The files removed.
    """
    removed = []
    for p in Path(folder).rglob(".*"):
        if p.is_file() and TEMP_NAME.match(p.name):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    if removed:
        logger.info("%s: removed %d temporary file(s) left by an interrupted run", folder, len(removed))
    return removed
