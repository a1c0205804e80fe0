"""The planner as a pure function of the fingerprint and (fake) device measurements."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from medseg.core import make_affine
from medseg.errors import ConfigError
from medseg.pipeline import Pipeline
from medseg.planning import rules
from medseg.planning.fingerprint import fingerprint_dataset
from medseg.planning.planner import PlanOptions, plan
from medseg.planning.render import plan_record
from medseg.planning.sizing import (
    MIN_ITERATIONS,
    Measurement,
    ProbeRequest,
    multiply_adds,
    network_for,
    validation_windows,
)

from .conftest import box_case, dataset_json, write_case


class FakeDevice:
    """Memory and time from formulas (so the planner's model of them is exact)."""

    name = "fake"
    kind = "cpu"

    def __init__(
        self, budget: float = 8e9, seconds_per_mac: float = 1e-10, fixed_s: float = 0.002, load: float = 0.0
    ) -> None:
        self.budget = budget
        self.load = load
        self.seconds_per_mac = seconds_per_mac
        self.fixed_s = fixed_s
        self.requests: list[ProbeRequest] = []

    def memory_budget(self) -> tuple[float, str]:
        return self.budget, "fake budget"

    @staticmethod
    def network(req: ProbeRequest):
        o = req.network
        strides = tuple(tuple(s) for s in o["strides"])
        pools = tuple(int(np.log2(np.prod([s[a] for s in strides]))) for a in range(len(req.patch)))
        top = rules.Topology(
            strides, tuple(tuple(k) for k in o["kernel_sizes"]), req.patch, tuple(2**p for p in pools), pools
        )
        from medseg.planning.sizing import Network

        return Network(top, tuple(o["channels_per_stage"]))

    def peak(self, req: ProbeRequest) -> float:
        net = self.network(req)
        fmap = rules.feature_map_size(net.topology, net.features, req.network["out_channels"])
        return 300e6 + 12.0 * fmap * req.batch

    def measure(self, req: ProbeRequest) -> Measurement:
        self.requests.append(req)
        net = self.network(req)
        macs = multiply_adds(net, req.network["in_channels"], req.network["out_channels"])
        return Measurement(
            True,
            peak_bytes=self.peak(req),
            baseline_bytes=200e6,
            seconds_per_iteration=self.fixed_s + self.seconds_per_mac * macs * req.batch,
            seconds_per_window=self.seconds_per_mac * macs / 3,
            epoch_overhead_s=0.05,
            load=self.load,
        )


def _dataset(root: Path, n: int = 4, shape=(64, 64, 64), spacing=(1.0, 1.0, 1.0), channel: str = "CT") -> Path:
    for i in range(n):
        image = np.zeros(shape, np.float32)
        image[4:-4, 4:-4, 1:-1] = -50.0 + i
        label = np.zeros(shape, np.uint8)
        sl = tuple(slice(s // 4, s // 2) for s in shape)
        label[sl] = 1
        image[label > 0] = 60.0 + 10 * i
        write_case(root, f"c{i}", image, label, make_affine(spacing))
    dataset_json(root, {"background": 0, "organ": 1}, channels=(channel,))
    return root


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> Path:
    return _dataset(tmp_path_factory.mktemp("cube") / "ds")


def test_no_probe_reproduces_nnunet_sizing(cube: Path) -> None:
    p = plan(fingerprint_dataset(cube))
    conf = p.configurations["3d"]
    # the nonzero box is 56 × 56 × 62 at 1 mm: the patch is all of it; pooled jointly 56 → 28 → 14 → 7 (3 times,
    # z alone at 8 voxels is not pooled again: a single axis needs ≥ 12), so 62 is padded to a multiple of 8
    assert p.chosen == "3d" and conf.patch == [56, 56, 64]
    assert conf.network.topology.pools == (3, 3, 3) and conf.network.features == (32, 64, 128, 256)
    # 5 % of 4 cases of 64³ is less than one patch: the batch is nnU-Net's minimum, 2
    assert conf.batch == 2
    assert p.pipeline["training"]["max_epochs"] == 1000 and p.pipeline["training"]["iterations_per_epoch"] == 250
    pipe = Pipeline.from_dict(p.pipeline)
    assert [s.name for s in pipe.preprocess] == ["reorient", "crop_foreground", "percentile_clip", "resample"]


def test_ct_normalisation_uses_the_fingerprint(cube: Path) -> None:
    fp = fingerprint_dataset(cube)
    p = plan(fp)
    clip = next(s["percentile_clip"] for s in p.pipeline["preprocess"] if "percentile_clip" in s)
    stats = fp.intensity(0)
    assert clip["low"] == pytest.approx(stats["percentile_00_5"], abs=1e-3)
    assert clip["high"] == pytest.approx(stats["percentile_99_5"], abs=1e-3)
    assert clip["mean"] == pytest.approx(np.mean([60, 70, 80, 90]), abs=1e-3)
    assert p.pipeline["input"]["modality"] == "CT"
    mr = plan(fp, PlanOptions(modality=("MR",)))
    assert {"zscore": {"over": "nonzero"}} in mr.pipeline["preprocess"]  # crop keeps 0.74 < 0.75 of the volume


def test_memory_budget_shrinks_the_patch_and_is_measured(cube: Path) -> None:
    fp = fingerprint_dataset(cube)
    roomy = plan(fp, PlanOptions(), FakeDevice(budget=8e9))
    assert roomy.configurations["3d"].patch == [56, 56, 64]
    full_peak = FakeDevice().peak(_request(roomy))  # the last probe verified the full patch
    tight = FakeDevice(budget=300e6 + 0.5 * (full_peak - 300e6))
    small = plan(fp, PlanOptions(), tight)
    conf = small.configurations["3d"]
    assert np.prod(conf.patch) < 56 * 56 * 64
    assert conf.measured is not None and conf.measured.peak_bytes <= tight.budget
    assert len(tight.requests) <= 6  # calibration + verification, not a walk over every candidate
    text = next(d for d in small.decisions if d.key == "training.patch_size").numbers
    assert "measured" in text and "fake budget" in text


def _request(p) -> ProbeRequest:
    net, batch, _ = p.probes[-1]
    return ProbeRequest(net.options(1, 2), net.topology.patch, batch)


def test_memory_too_small_is_one_clear_error(cube: Path) -> None:
    with pytest.raises(ConfigError, match=r"even the smallest patch .* raise --memory-gb"):
        plan(fingerprint_dataset(cube), PlanOptions(), FakeDevice(budget=250e6))


def test_time_budget_sizes_the_schedule(cube: Path) -> None:
    fp = fingerprint_dataset(cube)
    device = FakeDevice(seconds_per_mac=2e-12)
    p = plan(fp, PlanOptions(time_budget_s=600.0), device, lambda steps: 30.0)
    conf = p.configurations[p.chosen]
    s = conf.schedule
    m = conf.measured
    assert m is not None
    loop = (600.0 - 30.0) * 0.95
    used = s.iterations * m.seconds_per_iteration + s.max_epochs * m.epoch_overhead_s
    assert used <= loop and used > 0.75 * loop  # the schedule fills the budget without passing it
    assert s.max_time_s == pytest.approx(570.0)
    assert p.pipeline["training"]["max_time_s"] == pytest.approx(570.0)
    assert s.iterations >= MIN_ITERATIONS and conf.network.features[0] == 32


def test_short_budget_picks_a_narrower_network_and_says_why(cube: Path) -> None:
    fp = fingerprint_dataset(cube)
    net = network_for(rules.pool_and_conv_props([1.0] * 3, [56, 56, 64]))
    full = 0.002 + 2e-11 * multiply_adds(net, 1, 2) * 2  # seconds per iteration of the nnU-Net-size network
    budget = 0.6 * MIN_ITERATIONS * full  # too few iterations for it
    p = plan(fp, PlanOptions(time_budget_s=budget, config="3d"), FakeDevice(seconds_per_mac=2e-11), lambda s: 1.0)
    conf = p.configurations["3d"]
    assert conf.network.features[0] < 32 or np.prod(conf.patch) < 56 * 56 * 64
    widths = next(d for d in p.decisions if d.key == "network.options.channels_per_stage")
    assert widths.origin == "medseg" and "time budget" in widths.numbers and "iterations" in widths.numbers


def test_budget_below_preprocessing_is_an_error_that_names_the_budget_needed(cube: Path) -> None:
    fp = fingerprint_dataset(cube)
    with pytest.raises(ConfigError, match="--time-budget 10 s is too short .* give --time-budget (\\d+)m$") as err:
        plan(fp, PlanOptions(time_budget_s=10.0), FakeDevice(), lambda s: 12.0)
    minutes = int(re.search(r"give --time-budget (\d+)m$", str(err.value)).group(1))  # type: ignore[union-attr]
    enough = plan(fp, PlanOptions(time_budget_s=60.0 * minutes), FakeDevice(), lambda s: 12.0)
    assert enough.configurations[enough.chosen].schedule.iterations >= MIN_ITERATIONS and not enough.warnings


def test_budget_too_short_to_learn_warns_with_the_budget_that_would(cube: Path) -> None:
    fp = fingerprint_dataset(cube)
    device = FakeDevice(seconds_per_mac=2e-10)  # slow: even the smallest rung gets < MIN_ITERATIONS in 1 min
    short = plan(fp, PlanOptions(time_budget_s=60.0, config="3d"), device, lambda s: 1.0)
    conf = short.configurations["3d"]
    assert conf.schedule.iterations < MIN_ITERATIONS
    (warning,) = short.warnings
    assert f"only {conf.schedule.iterations} training iterations" in warning
    minutes = int(re.search(r"give --time-budget (\d+)m$", warning).group(1))  # type: ignore[union-attr]
    longer = plan(fp, PlanOptions(time_budget_s=60.0 * minutes, config="3d"), device, lambda s: 1.0)
    assert longer.configurations["3d"].schedule.iterations >= MIN_ITERATIONS and not longer.warnings
    assert plan_record(short)["warnings"] == [warning]


def test_plan_predicts_the_time_to_predict_a_case(cube: Path) -> None:
    fp = fingerprint_dataset(cube)
    p = plan(fp, PlanOptions(time_budget_s=600.0), FakeDevice(), lambda s: 8.0)
    conf = p.configurations[p.chosen]
    assert conf.measured is not None
    windows = validation_windows(conf.median_shape, conf.patch)
    expected = windows * 8 * conf.measured.seconds_per_window + 8.0 / fp.n_cases
    assert conf.case_seconds == pytest.approx(expected)
    assert f"{windows} windows × 8 mirrored passes" in conf.case_text
    inference = next(d for d in p.decisions if d.key == "inference.patch_size")
    assert conf.case_text in inference.numbers
    assert plan_record(p)["configurations"][p.chosen]["predicted_seconds_per_case"] == pytest.approx(expected)
    unprobed = plan(fp)
    assert math.isnan(unprobed.configurations[unprobed.chosen].case_seconds)


def _lesion_dataset(root: Path, lesion: bool, inplane_step: float = 0.25) -> Path:
    """3 CT cases at (1 to 1.5) × same × 3 mm: an organ, and with ``lesion`` a 2 × 2 × 1-voxel lesion (label 2)."""
    for i in range(3):
        image = np.zeros((40, 40, 12), np.float32)
        image[4:-4, 4:-4, 1:-1] = -50.0
        label = np.zeros(image.shape, np.uint8)
        label[8:30, 8:30, 3:9] = 1
        if lesion:
            label[32:34, 32:34, 5] = 2
        image[label == 1], image[label == 2] = 60.0 + i, 120.0
        inplane = 1.0 + inplane_step * i
        write_case(root, f"c{i}", image, label, make_affine((inplane, inplane, 3.0)))
    names = {"background": 0, "organ": 1} | ({"lesion": 2} if lesion else {})
    dataset_json(root, names, channels=("CT",))
    return root


def test_a_small_label_refines_the_spacing_and_says_why(tmp_path: Path) -> None:
    """The lesion (2 × 2 × 1 voxels, median 19 mm³, 3.3 mm across) spans < 3 voxels at 1.25 × 1.25 × 3 mm: finer in-plane,
    never finer than the data's finest 1 mm, the 3 mm slices kept (no case has thinner)."""
    fp = fingerprint_dataset(_lesion_dataset(tmp_path / "lesion", lesion=True))
    p = plan(fp, PlanOptions(), FakeDevice())
    spacing = next(d for d in p.decisions if d.key == "preprocess.resample")
    assert spacing.origin == "medseg" and "smallest label lesion" in spacing.numbers
    resample = p.pipeline["preprocess"][-1]["resample"]["spacing"]
    assert 1.0 <= resample[0] < 1.25 and resample[2] == pytest.approx(3.0)
    organ = plan(fingerprint_dataset(_lesion_dataset(tmp_path / "organ", lesion=False)), PlanOptions(), FakeDevice())
    kept = next(d for d in organ.decisions if d.key == "preprocess.resample")
    assert kept.origin == "nnU-Net" and kept.value == pytest.approx([1.25, 1.25, 3.0])
    assert "nnU-Net's spacing kept" in kept.numbers
    at_floor = plan(fingerprint_dataset(_lesion_dataset(tmp_path / "1mm", True, 0.0)), PlanOptions(), FakeDevice())
    limited = next(d for d in at_floor.decisions if d.key == "preprocess.resample")  # 1 × 1 × 3 mm in every case
    assert limited.origin == "nnU-Net" and "no case has a finer spacing along it" in limited.numbers
    unprobed = next(d for d in plan(fp).decisions if d.key == "preprocess.resample")  # --no-probe: nnU-Net's plan
    assert unprobed.origin == "nnU-Net" and unprobed.value == pytest.approx([1.25, 1.25, 3.0])


def test_probes_on_a_busy_machine_say_so(cube: Path) -> None:
    fp = fingerprint_dataset(cube)
    cores = len(os.sched_getaffinity(0))
    quiet = plan(fp, PlanOptions(time_budget_s=600.0), FakeDevice(load=cores), lambda s: 1.0)
    busy = plan(fp, PlanOptions(time_budget_s=600.0), FakeDevice(load=cores + 2.0), lambda s: 1.0)
    assert not quiet.warnings
    (line,) = busy.warnings
    assert f"load average up to {cores + 2.0:.1f} on {cores} cores" in line
    assert line in busy.configurations[busy.chosen].notes


def test_anisotropic_thick_slices_choose_2d_along_the_coarse_axis(tmp_path: Path) -> None:
    # 1 × 1 × 6 mm, 8 slices: the 3D network could pool z once → 2D, slices along z (RAS kept)
    fp = fingerprint_dataset(_dataset(tmp_path / "z", n=3, shape=(64, 64, 8), spacing=(1.0, 1.0, 6.0)))
    p = plan(fp)
    assert p.chosen == "2d" and p.pipeline["preprocess"][0] == {"reorient": {"axcodes": "RAS"}}
    assert len(p.pipeline["training"]["patch_size"]) == 2 and p.pipeline["network"]["options"]["spatial_dims"] == 2
    # the same data with the thick axis along x: slices must run along x, so it goes last (A, S, R)
    fx = fingerprint_dataset(_dataset(tmp_path / "x", n=3, shape=(8, 64, 64), spacing=(6.0, 1.0, 1.0)))
    px = plan(fx)
    assert px.chosen == "2d" and px.pipeline["preprocess"][0] == {"reorient": {"axcodes": "ASR"}}
    resample = px.pipeline["preprocess"][-1]["resample"]["spacing"]
    assert resample == pytest.approx([1.0, 1.0, 6.0])  # in the reoriented (A, S, R) order
    Pipeline.from_dict(px.pipeline)
    forced = plan(fx, PlanOptions(config="3d"))
    assert forced.chosen == "3d" and len(forced.pipeline["training"]["patch_size"]) == 3


def test_postprocessing_proposals_follow_label_statistics(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for i in range(3):
        image, label = box_case(fg_value=100.0 + i)
        write_case(root, f"c{i}", image, label, make_affine((1.0, 1.0, 3.0)))
    dataset_json(root, {"background": 0, "organ": 1, "cyst": 2}, channels=("MR",))
    p = plan(fingerprint_dataset(root))
    post = p.pipeline["postprocess"]
    # organ: 2 components (smallest 4 voxels × 3 mm³); cyst: one component, with a hole
    assert {"keep_largest_component": {"per_label": True, "connectivity": 26, "labels": [2]}} in post
    assert {"remove_small_components": {"min_size_mm3": 6.0, "per_label": True, "labels": [1]}} in post
    assert {"fill_holes": {"mode": "3d", "labels": [1]}} in post
    Pipeline.from_dict(p.pipeline)


def test_every_decision_has_a_rule_and_numbers_or_says_none(cube: Path) -> None:
    p = plan(fingerprint_dataset(cube), PlanOptions(), FakeDevice())
    keys = {d.key for d in p.decisions}
    for key in ("preprocess.resample", "training.patch_size", "training.batch_size", "network.options.strides"):
        assert key in keys
    assert all(d.rule for d in p.decisions)
    assert not any(isinstance(d.value, float) and math.isnan(d.value) for d in p.decisions)


def test_a_slow_device_is_calibrated_on_small_candidates_and_a_budget_skips_slow_ones(cube: Path) -> None:
    """On a slow CPU the probes stay cheap: the eighth of nnU-Net's largest patch (GBs and minutes a step there)
    is not run when the sixty-fourth already took over PROBE_MAX_S / 8 a step, and under a time budget no
    candidate predicted to give fewer than half the iterations a network needs is measured."""
    from medseg.planning.sizing import PROBE_MAX_S, Sizer

    fp = fingerprint_dataset(cube)
    target = np.asarray(fp.data["spacing"]["median"], float)
    sequence = [network_for(t) for t in rules.shrink_sequence(list(target), [56.0, 56.0, 62.0]) if t.n_stages >= 2]
    largest = np.prod(sequence[0].topology.patch)

    def probed(device: FakeDevice) -> list[float]:
        sizer = Sizer(device, 1, 3, (56, 56, 62))
        sizer.calibrate(sequence)
        return [np.prod(r.patch) / largest for r in device.requests]

    fast, slow = FakeDevice(seconds_per_mac=1e-13), FakeDevice(seconds_per_mac=1e-8)
    assert len(probed(fast)) == 2 and 1 / 64 < max(probed(fast)) <= 1 / 8  # the 1/64 and the 1/8 candidates
    shares = probed(slow)
    assert len(shares) == 2 and max(shares) <= 1 / 64  # the 1/64 candidate and the smallest
    assert slow.measure(slow.requests[0]).seconds_per_iteration > PROBE_MAX_S / 8

    budgeted = FakeDevice(seconds_per_mac=2e-11)
    p = plan(fp, PlanOptions(time_budget_s=600.0, config="3d"), budgeted, lambda s: 1.0)
    assert p.configurations["3d"].measured is not None
    timed = [m.seconds_per_iteration for _, _, m in p.probes]
    assert max(timed[2:]) <= 600.0 / (0.5 * MIN_ITERATIONS)  # after the two calibration probes
