"""QC measurements and the score on analytic inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.qc import assess, grid_measurements, training_summary
from medseg.qc.measure import border_fractions, probability_measurements
from medseg.qc.score import Assessment, Signal, z_score_signal


def test_border_fraction_of_a_cut_block_and_an_inner_block() -> None:
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:5, 2:5, 0:4] = 1  # 3×3×4 block cut by the z = 0 face: 9 of 36 voxels on the border
    labels[5:8, 5:8, 4:7] = 2  # inside
    assert border_fractions(labels) == pytest.approx({"1": 9 / 36, "2": 0.0})


def test_probability_measurements_entropy_margin_and_argmax() -> None:
    p = torch.zeros((2, 4, 4, 4))
    p[0] = 1.0
    p[:, :2] = 0.5  # half the grid uncertain (entropy 1, margin 0): argmax → 0 on ties
    p[0, 3], p[1, 3] = 0.1, 0.9  # a slab of label 1, probability 0.9
    labels, u = probability_measurements(p)
    assert labels.dtype == np.uint8 and (labels[3] == 1).all() and (labels[:3] == 0).all()
    h = -(0.1 * math.log(0.1) + 0.9 * math.log(0.9)) / math.log(2)
    assert u["1"]["entropy"] == pytest.approx(h, rel=1e-5)
    assert u["1"]["margin"] == pytest.approx(0.8, rel=1e-5) and u["1"]["max_softmax"] == pytest.approx(0.9, rel=1e-5)


def test_score_is_one_minus_product_and_z_mapping() -> None:
    assert [z_score_signal(z) for z in (0.0, 2.0, -4.0, 6.0, 60.0)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    a = Assessment([Signal("a", 0.5, "a"), Signal("b", 0.5, "b"), Signal("c", 0.0, "c")])
    assert a.score == pytest.approx(0.75) and a.flags == ["a", "b"]


def test_input_evidence_alone_reaches_the_review_threshold_and_ranks_below_mask_evidence() -> None:
    unlike = Assessment([Signal("intensity.CT", 1.0, "input", evidence="input"), Signal("border.organ", 1.0, "cut",
                                                                                        evidence="input")])  # fmt: skip
    assert unlike.score == pytest.approx(0.5)  # INPUT_WEIGHT: flagged at the default --qc-threshold 0.5
    failed = Assessment([Signal("volume.organ", 0.6, "volume")])
    both = Assessment([*unlike.signals, Signal("volume.organ", 0.6, "volume")])
    assert failed.score == pytest.approx(0.6) and both.score == pytest.approx(0.6 + 0.4 * 0.5)
    assert both.score > failed.score > unlike.score
    assert both.flags[:3] == ["input", "cut", "volume"]  # strongest first; at equal strength mask evidence first
    tie = Assessment([Signal("x", 1.0, "input", evidence="input"), Signal("y", 1.0, "mask")])
    assert tie.flags == ["mask", "input"] and tie.score == 1.0


def test_mask_evidence_per_label_and_the_calibration_feature() -> None:
    a = Assessment(
        [Signal("volume.liver", 0.5, "v", label="1"), Signal("full", 0.2, "f"), Signal("border.liver", 1.0, "b",
                                                                                          evidence="input", label="1")],
        expected_dice={"1": 0.9, "2": 0.8},
    )  # fmt: skip
    assert a.evidence("mask", "1") == pytest.approx(1 - 0.5 * 0.8) and a.evidence("mask", "2") == pytest.approx(0.2)
    assert a.features() == pytest.approx({"1": 0.9 * 0.5 * 0.8, "2": 0.8 * 0.8})  # input evidence does not discount


def test_soft_dice_and_border_entropy_of_a_blurred_block() -> None:
    p = torch.zeros((2, 8, 8, 8))
    p[0] = 1.0
    p[1, 2:6, 2:6, 2:6], p[0, 2:6, 2:6, 2:6] = 1.0, 0.0  # a certain 4³ block ...
    p[1, 1, 2:6, 2:6], p[0, 1, 2:6, 2:6] = 0.4, 0.6  # ... with some probability just outside one face
    _, u = probability_measurements(p)
    assert u["1"]["soft_dice"] == pytest.approx(2 * 64 / (64 + 6.4 + 64))
    assert u["1"]["entropy"] == 0.0 and u["1"]["border_entropy"] == 0.0  # certain inside and on its rim
    p[1, 2, 2:6, 2:6], p[0, 2, 2:6, 2:6] = 0.7, 0.3  # its first layer uncertain: a rim voxel of the block
    _, u = probability_measurements(p)
    h = -(0.7 * math.log(0.7) + 0.3 * math.log(0.3)) / math.log(2)
    rim = 64 - 8  # every voxel of a 4³ block but the 2³ core touches another label
    assert u["1"]["border_entropy"] == pytest.approx(16 * h / rim, rel=1e-5)
    assert u["1"]["entropy"] == pytest.approx(16 * h / 64, rel=1e-5)


def test_disagreement_between_passes_scores_and_flags() -> None:
    labels = np.zeros((12, 12, 12), np.uint8)
    labels[3:9, 3:9, 3:9] = 1
    measured = grid_measurements(np.ones((1, 12, 12, 12), np.float32), labels, 1.0)
    measured["agreement"] = {"mirrors": {"0": 1.0, "1": 0.7}, "folds": {"1": 0.95}}
    source = {"spacing": [1.0] * 3, "shape": [12] * 3, "orientation": "RAS", "modality": ""}
    measured["uncertainty"] = {"1": {"entropy": 0.0, "margin": 1.0, "max_softmax": 1.0, "soft_dice": 1.0,
                                     "border_entropy": 0.0}}  # fmt: skip
    a = assess(measured, source, {}, labels={1: "organ"}, channels=["CT"])
    scores = {s.name: s.score for s in a.signals}
    assert scores["agreement.mirrors.organ"] == pytest.approx(1.0) and scores["agreement.folds.organ"] == 0.0
    assert (
        a.flags[0]
        == "organ: the mirrored passes agree with a Dice of 0.70 (a confident model: ≥ 0.95; no out-of-fold reference)"
    )
    assert a.score == pytest.approx(1.0)


def _case(shift: float = 0.0, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(0.0, 0.1, (1, 24, 24, 24)).astype(np.float32)
    labels = np.zeros((24, 24, 24), np.uint8)
    labels[8 : 8 + size, 8:16, 8:16] = 1
    image[0][labels == 1] += 1.0 + shift
    return image, labels


def _summary() -> dict:
    entries = []
    for seed, size in enumerate((7, 8, 9)):
        image, labels = _case(size=size, seed=seed)
        entries.append({"input": {"spacing": [2.0, 2.0, 2.0], "shape": [24] * 3, "orientation": "RAS", "modality": ""},
                        **grid_measurements(image, labels, 8.0)})  # fmt: skip
    return training_summary(entries)


def test_like_the_training_cases_scores_low_shifted_intensity_and_volume_score_high() -> None:
    summary = _summary()
    source = {"spacing": [2.0, 2.0, 2.0], "shape": [24] * 3, "orientation": "RAS", "modality": ""}
    kw = {"labels": {1: "organ"}, "channels": ["CT"]}
    same = assess(grid_measurements(*_case(seed=5), 8.0), source, summary, **kw)
    assert same.score < 0.1, same.to_dict()
    shifted = assess(grid_measurements(*_case(shift=-3.0, seed=5), 8.0), source, summary, **kw)
    assert shifted.score == pytest.approx(0.5) and "CT foreground intensity" in shifted.flags[0]  # input evidence
    big = assess(grid_measurements(*_case(size=16, seed=5), 8.0), source, summary, **kw)
    assert "organ volume 8.19 mL vs training 4.1±0.418 mL (z 9.8; raw prediction on the network grid)" in big.flags
    far = assess(grid_measurements(*_case(seed=5), 8.0), {**source, "spacing": [2.0, 2.0, 8.0]}, summary, **kw)
    assert far.score == pytest.approx(0.5) and far.flags[0].startswith("spacing 2 × 2 × 8 mm vs training 2 × 2 × 2 mm")


def test_without_a_summary_only_the_prediction_signals_and_a_note() -> None:
    source = {"spacing": [2.0, 2.0, 2.0], "shape": [24] * 3, "orientation": "RAS", "modality": ""}
    measured = grid_measurements(*_case(), 8.0)
    a = assess(measured, source, {}, labels={1: "organ"}, channels=["CT"])
    assert {s.name for s in a.signals} == {"border.organ"} and "no training summary" in a.notes[0]
    empty = grid_measurements(np.zeros((1, 8, 8, 8), np.float32), np.zeros((8, 8, 8), np.uint8), 1.0)
    e = assess(empty, source, {}, labels={1: "organ"}, channels=["CT"])
    assert e.score == 1.0 and e.flags == ["no label was predicted anywhere"]
