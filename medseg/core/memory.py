"""Keep freed memory in the process heap while a network runs on the CPU.

glibc hands every block above its mmap threshold (at most 32 MiB) straight back to the
kernel when it is freed. A 3D network allocates activations of tens to hundreds of MiB
on every forward pass, so each window maps, zero-fills and unmaps them again: measured on
2 cores, these page faults took about half of the sliding-window wall time (system time
≈ user time). Inside :func:`reuse_freed_memory` blocks up to 256 MiB come from the heap
and stay there for the next window or iteration; on exit glibc's own upper thresholds are
restored and the free memory is returned with ``malloc_trim``. Larger blocks (stitched
outputs, whole volumes) are still mapped on their own, so they cannot fragment the heap
and raise the peak. Elsewhere than glibc (macOS, Windows, musl) this
is a no-op; PyTorch's CPU tuning guide reaches the same effect with jemalloc/tcmalloc.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import platform
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: While inside: activations up to 256 MiB come from the heap, which is never trimmed.
_INSIDE = {_M_MMAP_THRESHOLD: 256 * 2**20, _M_TRIM_THRESHOLD: 2**31 - 1}
#: On exit: the values glibc's dynamic thresholds grow to on 64-bit (32 MiB; trim twice that).
_OUTSIDE = {_M_MMAP_THRESHOLD: 32 * 2**20, _M_TRIM_THRESHOLD: 64 * 2**20}

_lock = threading.Lock()
_depth = 0


def _load_libc() -> ctypes.CDLL | None:
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_libc = _load_libc()


def _set(values: dict[int, int]) -> bool:
    assert _libc is not None
    return all(_libc.mallopt(param, value) == 1 for param, value in values.items())


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Reuse freed heap memory inside the block (nestable, thread-safe; also a decorator).

    >>> import torch
    >>> from medseg.core.memory import active, reuse_freed_memory
    >>> network = torch.nn.Conv3d(1, 2, 3)
    >>> with reuse_freed_memory():
    ...     logits = network(torch.zeros(1, 1, 8, 8, 8))
    >>> tuple(logits.shape), active()
    ((1, 2, 6, 6, 6), False)
    """
    global _depth
    if _libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1 and not _set(_INSIDE):
            log.debug("mallopt refused the inference thresholds; freed memory goes back to the kernel")
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _set(_OUTSIDE)
                _libc.malloc_trim(0)


def active() -> bool:
    """True inside :func:`reuse_freed_memory` on glibc (where it has an effect)."""
    return _libc is not None and _depth > 0
