"""How many windows go through the network at once on a CPU.

On a CPU a batch of windows buys little: one window already keeps the cores busy, except for small
networks whose per-operation overhead dominates. It costs memory in proportion, though: with nnU-Net's
stage widths (32…320) on 96³ windows, 4 windows took about 2.5× the memory of 1 and were slower, in
float32 and in bfloat16, while the small benchmark U-Net (8…64) ran almost twice as fast with 4 windows in
float32 (``benchmarks/bench_window_batch.py``; the table is in benchmarks/RESULTS.md, ``window_batch``).
So the Predictor sends at most as many windows as keep the network's largest single activation, over
the batch, within :data:`ACTIVATION_BUDGET_MIB`; GPUs keep the configured batch.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)

#: Largest activation (float32 MiB) one batch of windows may produce on a CPU.
ACTIVATION_BUDGET_MIB = 96.0


def largest_activation_mib(network: nn.Module, in_channels: int, patch: Sequence[int]) -> float | None:
    """The largest output (MiB, float32) of any leaf module for one window, from a forward pass on the
    ``meta`` device (no memory, no compute); None when the network cannot run there (e.g. TorchScript)."""
    try:
        ghost = copy.deepcopy(network).to("meta")
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        log.debug("no activation estimate for %s: %s", type(network).__name__, exc)
        return None
    sizes: list[int] = []

    def record(_module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            sizes.append(output.numel())

    hooks = [m.register_forward_hook(record) for m in ghost.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            ghost(torch.empty(1, in_channels, *patch, device="meta"))
    except (RuntimeError, TypeError, NotImplementedError, ValueError) as exc:
        log.debug("no activation estimate for %s: %s", type(network).__name__, exc)
        return None
    finally:
        for hook in hooks:
            hook.remove()
    return max(sizes, default=0) * 4 / 2**20


def windows_per_batch(
    network: nn.Module, in_channels: int, patch: Sequence[int], configured: int, device: torch.device
) -> int:
    """``configured`` on GPUs; on a CPU at most as many windows as fit :data:`ACTIVATION_BUDGET_MIB`."""
    if device.type != "cpu" or configured <= 1:
        return configured
    largest = largest_activation_mib(network, in_channels, patch)
    if largest is None or largest <= 0:
        return configured
    fit = max(1, int(ACTIVATION_BUDGET_MIB // largest))
    chosen = min(configured, fit)
    if chosen < configured:
        log.debug("windows per batch: %d (largest activation %.0f MiB per window)", chosen, largest)
    return chosen
