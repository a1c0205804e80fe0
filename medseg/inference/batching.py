"""How many windows go through the network at once.

On a CPU a batch of windows buys little: one window already keeps the cores busy, except for small
networks whose per-operation overhead dominates. It costs memory in proportion, though: with nnU-Net's
stage widths (32…320) on 96³ windows, 4 windows took about 2.5× the memory of 1 and were slower, in
float32 and in bfloat16, while the small benchmark U-Net (8…64) ran almost twice as fast with 4 windows in
float32 (``benchmarks/bench_window_batch.py``; the table is in benchmarks/RESULTS.md, ``window_batch``).
So on a CPU the sliding window runs its first window alone, records the network's largest single output
for it, and sends at most as many windows per batch as keep that output, over the batch, within
:data:`ACTIVATION_BUDGET_MIB`; GPUs keep the configured batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

#: Largest activation (float32 MiB) one batch of windows may produce on a CPU.
ACTIVATION_BUDGET_MIB = 96.0


@contextlib.contextmanager
def largest_output(network: nn.Module) -> Iterator[list[int]]:
    """Inside the block, the network's forward passes record the element count of the largest output of any
    leaf module (one value in the yielded list; empty when the network has no hookable modules, e.g.
    TorchScript)."""
    largest: list[int] = []

    def record(_module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            if not largest:
                largest.append(output.numel())
            else:
                largest[0] = max(largest[0], output.numel())

    # TorchScript modules take no hooks; a network made of them reports nothing (the configured batch stays)
    leaves = [m for m in network.modules() if not list(m.children()) and not isinstance(m, torch.jit.ScriptModule)]
    hooks = [m.register_forward_hook(record) for m in leaves]
    try:
        yield largest
    finally:
        for hook in hooks:
            hook.remove()


def windows_per_batch(
    largest_elements: int, windows: int, configured: int, budget_mib: float = ACTIVATION_BUDGET_MIB
) -> int:
    """Windows per batch given the largest output (elements) seen for ``windows`` windows at once."""
    per_window_mib = largest_elements * 4 / 2**20 / max(windows, 1)
    if per_window_mib <= 0:
        return configured
    return max(1, min(configured, int(budget_mib // per_window_mib)))
