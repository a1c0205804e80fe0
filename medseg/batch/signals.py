"""Clean stops: SIGTERM and Ctrl-C end a batch between cases, with a report of what was done."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

#: Exit status of a run stopped by a signal (128 + its number, as shells report it).
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class Stop:
    """Set by the first SIGINT/SIGTERM: the executors start no new case once it is set.

    Attributes:
        signal: ``"SIGINT"`` or ``"SIGTERM"`` once received, else None.
    """

    def __init__(self) -> None:
        self.signal: str | None = None
        self._event = threading.Event()

    def set(self, name: str) -> None:
        self.signal = self.signal or name
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Stop]:
    """While the block runs, the first SIGINT/SIGTERM sets the yielded :class:`Stop` (the current case
    finishes); a second SIGINT raises ``KeyboardInterrupt`` (the current case is abandoned).

    Handlers are installed only in the main thread (elsewhere Python does not allow it); the
    previous handlers are restored afterwards.
    """
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set() and name == "SIGINT":
            raise KeyboardInterrupt
        stop.set(name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
