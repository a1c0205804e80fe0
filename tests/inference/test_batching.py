"""Windows per batch on a CPU: as many as keep the largest activation within the budget."""

from __future__ import annotations

import pytest
import torch

from medseg.inference.batching import ACTIVATION_BUDGET_MIB, largest_activation_mib, windows_per_batch
from medseg.networks import build_network

CPU = torch.device("cpu")


def test_largest_activation_is_the_biggest_leaf_output() -> None:
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.Conv3d(8, 2, 1))
    assert largest_activation_mib(net, 1, (32, 32, 32)) == pytest.approx(8 * 32**3 * 4 / 2**20)


def test_big_networks_get_one_window_small_ones_the_configured_batch() -> None:
    big = build_network("unet", in_channels=1, out_channels=5, spatial_dims=3, n_stages=6, base_channels=32,
                        max_channels=320)  # fmt: skip
    small = build_network("unet", in_channels=1, out_channels=2, spatial_dims=3, n_stages=4, base_channels=8,
                          max_channels=64)  # fmt: skip
    assert largest_activation_mib(big, 1, (96, 96, 96)) > ACTIVATION_BUDGET_MIB
    assert windows_per_batch(big, 1, (96, 96, 96), 4, CPU) == 1
    assert windows_per_batch(small, 1, (48, 48, 48), 4, CPU) == 4
    assert windows_per_batch(big, 1, (96, 96, 96), 4, torch.device("cuda")) == 4  # GPUs keep the batch


def test_networks_that_cannot_run_on_meta_keep_the_configured_batch() -> None:
    class Opaque(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(x.numpy())  # needs real data

    assert largest_activation_mib(Opaque(), 1, (8, 8, 8)) is None
    assert windows_per_batch(Opaque(), 1, (8, 8, 8), 3, CPU) == 3
