"""reuse_freed_memory: large freed blocks are reused inside, returned to the kernel outside."""

from __future__ import annotations

import resource

import pytest
import torch

from medseg.core import memory
from medseg.core.memory import reuse_freed_memory
from medseg.inference import sliding_window_inference

glibc_only = pytest.mark.skipif(memory._libc is None, reason="mallopt is glibc-only")


def _page_faults(repeats: int = 4, mib: int = 64) -> int:
    """Minor page faults of allocating, touching and freeing ``mib`` MiB ``repeats`` times."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        block = torch.ones(mib * 2**20 // 4)  # (numpy asks for huge pages, which hides the effect)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc_only
def test_freed_blocks_are_reused_inside_and_returned_outside() -> None:
    outside = _page_faults()
    with reuse_freed_memory():
        _page_faults(1)  # the first block grows the heap once
        inside = _page_faults()
    after = _page_faults()
    pages = 4 * 64 * 2**20 // resource.getpagesize()
    assert outside > pages // 2  # every 64 MiB block is mapped afresh by default
    assert inside < outside // 10
    assert after > pages // 2  # thresholds restored on exit


@glibc_only
def test_nesting_keeps_the_setting_until_the_outermost_exit() -> None:
    assert not memory.active()
    with reuse_freed_memory():
        with reuse_freed_memory():
            assert memory.active()
        assert memory.active()
    assert not memory.active()


def test_no_op_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_libc", None)
    with reuse_freed_memory():
        assert not memory.active()


@glibc_only
def test_sliding_window_runs_the_network_inside() -> None:
    seen: list[bool] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(memory.active())
            return x

    sliding_window_inference(torch.zeros(1, 1, 8, 8, 8), Probe(), patch_size=(4, 4, 4))
    assert seen and all(seen)
    assert not memory.active()
