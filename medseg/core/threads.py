"""CPU threading that degrades gracefully on a shared machine: OpenMP's idle threads wait passively.

torch's CPU kernels run on OpenMP (libgomp in the CPU wheels). Between parallel regions its
worker threads spin, by default, before they sleep; when other jobs hold the cores (a shared
workstation, a SLURM node, two medseg runs side by side), a spinning thread burns the time slice
the thread it waits for needs, and a training step slows several-fold more than sharing the
cores explains. ``OMP_WAIT_POLICY=PASSIVE`` makes idle threads sleep at once. The measurements
that chose it, quiet and beside busy neighbours, are in ``benchmarks/RESULTS.md``
(``benchmarks/threads.py``).

The policy is read once, when the OpenMP runtime loads with torch, so medseg sets it on import
(and the console script before anything else), for this process and the processes it starts.
A policy the user set is kept; ``MEDSEG_THREADING=off`` leaves the environment alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

#: What medseg sets unless the user chose: idle OpenMP threads sleep instead of spinning.
WAIT_POLICY = "PASSIVE"


def configure_openmp(environ: MutableMapping[str, str] | None = None) -> str:
    """Set ``OMP_WAIT_POLICY`` for the OpenMP runtime torch will load; returns what happened.

    Returns:
        ``"set"`` (medseg's policy set), ``"user"`` (the user's ``OMP_WAIT_POLICY`` kept), ``"off"``
        (``MEDSEG_THREADING=off``), or ``"late"`` (torch was imported first: its runtime has read the
        environment already; set ``OMP_WAIT_POLICY=PASSIVE`` before starting Python).
    """
    env = os.environ if environ is None else environ
    if env.get("MEDSEG_THREADING", "").lower() == "off":
        return "off"
    if env.get("OMP_WAIT_POLICY"):
        return "user"
    if "torch" in sys.modules:
        return "late"
    env["OMP_WAIT_POLICY"] = WAIT_POLICY
    return "set"
