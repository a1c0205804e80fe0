"""reuse_freed_memory: large freed blocks are reused inside, returned to the kernel outside."""

from __future__ import annotations

import resource

import pytest
import torch

from medseg.core import memory
from medseg.core.memory import reuse_freed_memory
from medseg.inference import sliding_window_inference

glibc_only = pytest.mark.skipif(memory._libc is None, reason="mallopt is glibc-only")


def _page_faults(network: torch.nn.Module, repeats: int = 3) -> int:
    """Minor page faults of ``repeats`` forward passes (activations of 113 MB each)."""
    x = torch.ones(2, 1, 96, 96, 96)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.inference_mode():
        for _ in range(repeats):
            network(x)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc_only
def test_activations_are_reused_inside_and_returned_outside() -> None:
    net = torch.nn.Sequential(
        torch.nn.Conv3d(1, 16, 3, padding=1), torch.nn.InstanceNorm3d(16), torch.nn.ReLU(), torch.nn.Conv3d(16, 2, 1)
    ).eval()
    _page_faults(net, 1)
    outside = _page_faults(net)
    with reuse_freed_memory():
        _page_faults(net, 1)  # the first pass grows the heap once
        inside = _page_faults(net)
    after = _page_faults(net)
    activation_pages = 3 * 2 * 16 * 96**3 * 4 // resource.getpagesize()
    assert outside > activation_pages  # every activation is mapped afresh by default
    assert inside < outside // 20
    assert after > activation_pages  # thresholds restored on exit


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
