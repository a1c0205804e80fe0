"""One run per output folder: an advisory lock file naming the process that holds it.

``fcntl.flock`` locks belong to the open file: the kernel releases them when the process ends,
however it ends (kill -9 included), so a lock file left behind by a dead run is simply taken
over, never a reason to stop. Independent shards of one batch (``--num-parts``) share the
folder: each holds the folder lock shared and its own part's lock exclusively.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from medseg.errors import OutputError

LOCK_NAME = ".medseg.lock"


def _holder(path: Path) -> str:
    """Who holds ``path``, from what it wrote there (``"pid 12 on host, since T: medseg predict ..."``)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another medseg run"
    return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}: {info.get('command')}"


def _live_parts(root: Path) -> list[str]:
    """Holders of the part locks in ``root`` that are held now (a lock we cannot take is held)."""
    live = []
    for path in sorted(root.glob(".medseg.part*.lock")):
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            live.append(_holder(path))
        finally:
            os.close(fd)
    return live


def _take(path: Path, exclusive: bool, what: str) -> int:
    for _ in range(5):
        fd = _lock(path, exclusive, what)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file while we locked it: lock the new one
    raise OutputError(f"{path}: the lock file keeps changing; another process is starting and stopping runs here")


def _lock(path: Path, exclusive: bool, what: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        parts = _live_parts(path.parent) if path.name == LOCK_NAME else []
        who = f"{len(parts)} sharded run(s) ({'; '.join(parts)})" if parts else _holder(path)
        raise OutputError(
            f"{path.parent}: {what} is in use by {who}; wait for that run to finish or choose another output "
            "folder (two runs on one folder would repeat each other's work)"
        ) from None
    except OSError:
        os.close(fd)
        raise
    if exclusive:  # shared holders write nothing: the folder lock's record is its exclusive holder's
        record = {
            "pid": os.getpid(),
            "host": platform.node(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
    return fd


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], part: tuple[int, int] = (0, 1)) -> Iterator[bool]:
    """Hold ``folder`` for this process while the block runs.

    Args:
        folder: the output folder (created if needed).
        part: ``(part_id, num_parts)``: with several parts the folder lock is shared and the
            part's own lock (``.medseg.partIofK.lock``) exclusive.

    Yields:
        True when this process holds the folder alone (then it may clean up after dead runs).

    Raises:
        OutputError: another live process holds the folder (or this part), named in the message.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    part_id, num_parts = part
    alone = num_parts == 1
    held = [(root / LOCK_NAME, _take(root / LOCK_NAME, alone, "the folder"), alone)]
    try:
        if not alone:
            path = root / f".medseg.part{part_id}of{num_parts}.lock"
            held.append((path, _take(path, True, f"part {part_id} of {num_parts}"), True))
        yield alone
    finally:
        for path, fd, exclusive in reversed(held):
            if exclusive:  # only its sole holder removes a lock file (a new holder re-checks the inode)
                path.unlink(missing_ok=True)
            os.close(fd)  # closing releases the lock
