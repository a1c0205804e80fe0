"""Windows per batch on a CPU: the first window runs alone and its largest output sizes the batches."""

from __future__ import annotations

import torch
from torch import nn

from medseg.inference import sliding_window_inference
from medseg.inference.batching import ACTIVATION_BUDGET_MIB, largest_output, windows_per_batch


def test_largest_output_is_recorded_and_the_hooks_removed() -> None:
    net = nn.Sequential(nn.Conv3d(1, 8, 3, padding=1), nn.Conv3d(8, 2, 1))
    with largest_output(net) as seen:
        net(torch.zeros(2, 1, 8, 8, 8))
    assert seen == [2 * 8 * 8**3]
    assert all(not m._forward_hooks for m in net.modules())


def test_windows_per_batch_fits_the_budget() -> None:
    per_window = int(ACTIVATION_BUDGET_MIB * 2**20 / 4 / 3)  # a third of the budget per window
    assert windows_per_batch(per_window, 1, 8) == 3
    assert windows_per_batch(per_window * 4, 1, 8) == 1  # more than the budget: still one window
    assert windows_per_batch(per_window, 1, 2) == 2  # never more than configured


class Recorder(nn.Module):
    """A network whose one layer has ``width`` channels; remembers the batch sizes it was called with."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.wide = nn.Conv3d(1, width, 1)
        self.head = nn.Conv3d(width, 2, 1)
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(x.shape[0]))
        return self.head(self.wide(x))


def test_big_networks_run_one_window_at_a_time_small_ones_batched() -> None:
    x = torch.rand(1, 1, 64, 64, 64)
    wide = Recorder(width=400)  # 400 × 32³ × 4 B = 50 MiB per window: one fits the budget, two do not
    small = Recorder(width=4)
    a = sliding_window_inference(x, wide, patch_size=(32, 32, 32), batch_size=4)
    b = sliding_window_inference(x, small, patch_size=(32, 32, 32), batch_size=4)
    assert wide.calls[0] == 1 and set(wide.calls[1:]) == {1}
    assert small.calls[0] == 1 and small.calls[1:3] == [4, 4]
    assert a.shape == b.shape == (1, 2, 64, 64, 64)


def test_no_budget_runs_exactly_the_configured_batch() -> None:
    wide = Recorder(width=400)
    sliding_window_inference(
        torch.rand(1, 1, 64, 64, 64), wide, patch_size=(32, 32, 32), batch_size=4, activation_budget_mib=None
    )
    assert wide.calls[0] == 4 and set(wide.calls[:-1]) == {4}  # no lone first window either


def test_batching_does_not_change_the_logits() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 300, 3, padding=1), nn.ReLU(), nn.Conv3d(300, 3, 1))
    x = torch.rand(1, 1, 40, 36, 30)
    adaptive = sliding_window_inference(x, net, patch_size=(24, 24, 24), batch_size=4)
    one_by_one = sliding_window_inference(x, net, patch_size=(24, 24, 24), batch_size=1)
    torch.testing.assert_close(adaptive, one_by_one, atol=1e-5, rtol=1e-5)


def test_torchscript_inside_a_module_keeps_the_configured_batch(tmp_path) -> None:
    from medseg.networks.external import load_torchscript
    from tests.networks.files import save_torchscript

    scripted = load_torchscript(save_torchscript(nn.Sequential(nn.Conv3d(1, 2, 1)), tmp_path / "net.pt"))

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = scripted

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    with largest_output(Wrapper()) as seen:
        Wrapper()(torch.zeros(1, 1, 4, 4, 4))
    assert seen == []
    out = sliding_window_inference(torch.rand(1, 1, 16, 16, 16), Wrapper(), patch_size=(8, 8, 8), batch_size=3)
    assert out.shape == (1, 2, 16, 16, 16)
