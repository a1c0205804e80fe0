"""Device probes on the real CPU (and CUDA when present): memory and speed are measured, not assumed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.core import make_affine
from medseg.planning import rules
from medseg.planning.consistency import open_dataset
from medseg.planning.fingerprint import fingerprint_dataset
from medseg.planning.planner import PlanOptions, plan
from medseg.planning.probes import ProbeDevice, time_preprocessing
from medseg.planning.sizing import ProbeRequest, network_for

from .conftest import dataset_json, write_case


def _request(patch: tuple[int, ...], base: int = 8, **extra) -> ProbeRequest:
    net = network_for(rules.pool_and_conv_props([1.0] * len(patch), list(patch)), base)
    return ProbeRequest(net.options(1, 3), net.topology.patch, 2, **extra)


@pytest.fixture(scope="module")
def cpu() -> ProbeDevice:
    with ProbeDevice("cpu", threads=1) as device:
        yield device


@pytest.mark.slow
def test_cpu_probe_measures_peak_rss_and_speed(cpu: ProbeDevice) -> None:
    small = cpu.measure(_request((16, 16, 16), window_batch=2, overhead=True, image_shape=(24, 20, 18)))
    large = cpu.measure(_request((48, 48, 48)))
    assert small.ok and large.ok, (small.error, large.error)
    # the baseline is the interpreter with torch and medseg loaded; the step adds to it
    assert 50e6 < small.baseline_bytes < small.peak_bytes
    # 27× the voxels: the activations grow (over a fixed cost of kernels and allocator arenas), each probe
    # in its own process, so the small one measured first does not inflate the large one or vice versa
    assert large.peak_bytes > small.peak_bytes + 100e6
    assert abs(large.baseline_bytes - small.baseline_bytes) < 20e6
    assert 0 < small.seconds_per_iteration < large.seconds_per_iteration
    assert small.seconds_per_window > 0 and small.epoch_overhead_s > 0
    budget, how = cpu.memory_budget()
    assert budget > 0 and "available" in how


@pytest.mark.slow
def test_failed_probe_is_reported_and_the_server_survives(cpu: ProbeDevice) -> None:
    bad = _request((16, 16, 16))
    broken = ProbeRequest({**bad.network, "channels_per_stage": [8]}, bad.patch, 2)  # wrong length
    m = cpu.measure(broken)
    assert not m.ok and "channels_per_stage" in m.error
    assert cpu.measure(_request((16, 16, 16))).ok


@pytest.mark.slow
def test_memory_probe_shrinks_the_patch_when_the_budget_is_small(tmp_path: Path, cpu: ProbeDevice) -> None:
    root = tmp_path / "ds"
    for i in range(3):
        image = np.zeros((32, 32, 32), np.float32)
        image[1:-1, 1:-1, 1:-1] = 30.0
        label = np.zeros((32, 32, 32), np.uint8)
        label[8:24, 10:22, 6:26] = 1
        image[label > 0] = 80.0 + i
        write_case(root, f"c{i}", image, label, make_affine((1.0, 1.0, 1.0)))
    dataset_json(root, {"background": 0, "organ": 1}, channels=("MR",))
    fp = fingerprint_dataset(root)
    roomy = plan(fp, PlanOptions(memory_gb=8.0), cpu)
    full = roomy.configurations["3d"]
    assert full.patch == [32, 32, 32] and full.measured is not None
    peak, base = full.measured.peak_bytes, full.measured.baseline_bytes
    # a budget halfway between the interpreter and the full patch's measured peak
    budget = (base + (peak - base) * 0.6) / 1e9
    tight = plan(fp, PlanOptions(memory_gb=budget), cpu)
    conf = tight.configurations["3d"]
    assert np.prod(conf.patch) < 32**3
    assert conf.measured is not None and conf.measured.peak_bytes <= budget * 1e9
    assert all(p % d == 0 for p, d in zip(conf.patch, conf.network.topology.divisor))


def test_preprocessing_is_timed_on_a_real_case(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for i in range(2):
        image = np.full((24, 24, 24), 10.0, np.float32)
        label = np.zeros((24, 24, 24), np.uint8)
        label[8:16, 8:16, 8:16] = 1
        write_case(root, f"c{i}", image, label, make_affine((1.0, 1.0, 2.0)))
    dataset_json(root, {"background": 0, "organ": 1}, channels=("MR",))
    dataset = open_dataset(root)
    seconds = time_preprocessing(
        dataset, fingerprint_dataset(dataset), [{"reorient": {"axcodes": "RAS"}}, {"resample": {"spacing": [1, 1, 1]}}]
    )
    assert 0 < seconds < 30


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_probe_measures_peak_allocated() -> None:
    with ProbeDevice("cuda") as cuda:
        small = cuda.measure(_request((32, 32, 32)))
        large = cuda.measure(_request((64, 64, 64)))
        assert small.ok and large.ok
        assert large.peak_bytes > 2 * small.peak_bytes
        assert cuda.memory_budget()[0] > 0


def test_the_probe_times_the_trainers_own_step_with_the_planned_recipe(monkeypatch) -> None:
    """The probe builds the optimiser, loss and precision from the training options the plan writes and runs the
    same training_step the Trainer runs (not a copy with its own constants)."""
    import medseg.training.optim as optim
    import medseg.training.step as step
    from medseg.planning.assemble import PLANNED_TRAINING
    from medseg.planning.probes import _measure
    from medseg.training.trainer import Trainer

    built, steps = [], []
    real_build, real_step = optim.build_optimizer, step.training_step
    monkeypatch.setattr(
        optim, "build_optimizer", lambda name, *a, **k: built.append((name, k)) or real_build(name, *a, **k)
    )
    monkeypatch.setattr(step, "training_step", lambda *a: steps.append(a[6]) or real_step(*a))
    net = _request((16, 16, 16), base=4).network
    assert ProbeRequest(net, (16, 16, 16), 1).training == PLANNED_TRAINING  # what every plan writes
    req = {"network": net, "patch": [16, 16, 16], "batch": 1, "augment": False,
           "training": {**PLANNED_TRAINING, "optimizer": "adamw", "lr": 1e-3, "grad_clip": 3.0}}  # fmt: skip
    assert _measure(req, "cpu", 1)["ok"]
    assert built[0] == ("adamw", {"lr": 1e-3, "weight_decay": 3e-5}) and set(steps) == {3.0}
    assert Trainer._step.__code__.co_names.count("training_step") == 1  # the Trainer's step is that function


def test_a_short_budget_times_each_probe_for_less(monkeypatch) -> None:
    """A one-minute plan does not spend 2 s per probe: the timed steps follow the budget, never under 0.5 s."""
    import medseg.training.step as step
    from medseg.planning.probes import MIN_TIMING_S, _measure, timing_seconds

    assert timing_seconds(None) == timing_seconds(3600.0) == MIN_TIMING_S
    assert timing_seconds(60.0) == 0.6 and timing_seconds(5.0) == 0.5
    clock = iter(float(t) for t in range(10_000))  # every perf_counter call: one more second
    monkeypatch.setattr("medseg.planning.probes.time.perf_counter", lambda: next(clock))
    calls: list[int] = []
    real = step.training_step
    monkeypatch.setattr(step, "training_step", lambda *a: calls.append(1) or real(*a))
    req = {"network": _request((8, 8, 8), base=4).network, "patch": [8, 8, 8], "batch": 1, "augment": False}
    assert _measure({**req, "timing_s": 10.0}, "cpu", 1)["ok"]
    long = len(calls)
    calls.clear()
    assert _measure({**req, "timing_s": 0.5}, "cpu", 1)["ok"]
    assert long == 1 + 10 and len(calls) == 1 + 3  # warm-up + steps until the timing is spent (one block at least)


def test_a_step_slower_than_a_probe_may_take_is_timed_once(monkeypatch) -> None:
    """A 3D nnU-Net patch on a CPU takes minutes a step: the probe stops after the first (its memory is measured)."""
    import medseg.training.step as step
    from medseg.planning.probes import _measure
    from medseg.planning.sizing import PROBE_MAX_S

    ticks = iter([0.0, PROBE_MAX_S + 10.0, *range(100, 10_000)])  # the warm-up step "takes" 30 s
    monkeypatch.setattr("medseg.planning.probes.time.perf_counter", lambda: next(ticks))
    calls: list[int] = []
    real = step.training_step
    monkeypatch.setattr(step, "training_step", lambda *a: calls.append(1) or real(*a))
    req = {"network": _request((8, 8, 8), base=4).network, "patch": [8, 8, 8], "batch": 2, "augment": False}
    reply = _measure({**req, "window_batch": 2}, "cpu", 1)
    assert reply["ok"] and len(calls) == 1 and reply["seconds_per_iteration"] == PROBE_MAX_S + 10.0
    assert reply["seconds_per_window"] == (PROBE_MAX_S + 10.0) / 6 and reply["peak_bytes"] > 0
