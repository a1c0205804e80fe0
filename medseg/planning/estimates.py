"""What a plan tells the user before training: expected prediction time per case, a busy machine while probing."""

from __future__ import annotations

import math
import os

from medseg.planning.decisions import fmt, fmt_seconds
from medseg.planning.sizing import Measurement, validation_windows


def case_seconds(
    measured: Measurement | None, median: list[float], patch: list[int], setup_s: float, device: str
) -> tuple[float, str]:
    """Expected seconds to predict a median case: sliding windows at half overlap × mirrored passes × measured
    seconds per window (probe batch), plus ``setup_s``, one case's measured reading and pre-processing.

    Returns ``(seconds, line)``; ``(nan, "")`` without a window measurement.
    """
    if measured is None or not measured.ok or not math.isfinite(measured.seconds_per_window):
        return math.nan, ""
    windows = validation_windows(median, patch)
    passes = 2 ** len(patch)  # mirroring along every axis, as the plan writes it
    network_s = windows * passes * measured.seconds_per_window
    text = (
        f"≈ {fmt_seconds(network_s + setup_s)} per median case on {device}: {windows} windows × "
        f"{passes} mirrored passes × {fmt(measured.seconds_per_window)} s (measured) + {fmt_seconds(setup_s)} "
        f"reading and pre-processing; without mirroring (inference.mirror_axes: []) ≈ "
        f"{fmt_seconds(network_s / passes + setup_s)}"
    )
    return network_s + setup_s, text


def busy_machine(measurements: list[Measurement], device: str) -> str:
    """A line when CPU probes ran beside other work (load average above the cores), else ""."""
    loads = [m.load for m in measurements if math.isfinite(m.load)]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not device.startswith("cpu") or not loads or max(loads) <= cores + 0.5:
        return ""
    return (
        f"the machine was busy while the probes ran (load average up to {max(loads):.1f} on {cores} cores): "
        "each time is the fastest of repeated blocks of steps; training beside the same work runs slower, and its "
        "time budget (training.max_time_s) then ends it with fewer iterations — plan and train on a quiet machine"
    )
