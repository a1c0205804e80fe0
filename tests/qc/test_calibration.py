"""The QC calibration: a monotone linear fit of out-of-fold Dice on qc_score, and its prediction."""

from __future__ import annotations

import math

import pytest

from medseg.qc import assess, grid_measurements
from medseg.qc.calibration import fit_calibration, predicted_dice


def test_fit_is_a_line_through_the_origin_per_label() -> None:
    features = [{"1": 1.0, "2": 0.5}, {"1": 0.5, "2": 1.0}, {"2": 0.8}]  # case 3 predicted no label 1: feature 0
    dice = [{"1": 0.9, "2": 0.5}, {"1": 0.4, "2": 0.8}, {"1": 0.1, "2": math.nan}]
    cal = fit_calibration(features, dice)
    one, two = cal["labels"]["1"], cal["labels"]["2"]
    assert cal["feature"] == "expected_dice"
    assert one["ratio"] == pytest.approx((0.9 + 0.2) / 1.25) and one["n"] == 3
    assert two["ratio"] == pytest.approx((0.25 + 0.8) / 1.25) and two["n"] == 2  # NaN left out
    assert one["mae"] == pytest.approx((abs(0.88 - 0.9) + abs(0.44 - 0.4) + 0.1) / 3)
    assert predicted_dice(cal, 0.3, {"1": 0.5}) == pytest.approx({"1": 0.44, "2": 0.0})
    assert predicted_dice({"labels": {"1": {"ratio": 1.5}}}, 0.0, {"1": 1.0}) == {"1": 1.0}  # clipped
    old = {"feature": "qc_score", "labels": {"1": {"intercept": 0.9, "slope": -0.4}}}  # written before the feature
    assert predicted_dice(old, 0.5) == pytest.approx({"1": 0.7})
    assert fit_calibration([{}, {}], [{"1": 0.9}, {"1": 0.8}])["labels"] == {}  # nothing to fit on


def test_assessment_gives_qc_predicted_dice_from_the_calibration_in_the_summary() -> None:
    import numpy as np

    labels = np.zeros((8, 8, 8), np.uint8)
    labels[2:5, 2:5, 2:5] = 1
    measured = grid_measurements(np.ones((1, 8, 8, 8), np.float32), labels, 1.0)
    source = {"spacing": [1.0] * 3, "shape": [8] * 3, "orientation": "RAS", "modality": ""}
    measured["uncertainty"] = {"1": {"entropy": 0.1, "margin": 0.9, "max_softmax": 0.95, "soft_dice": 0.8,
                                     "border_entropy": 0.2}}  # fmt: skip
    cal = {"feature": "expected_dice", "labels": {"1": {"ratio": 1.1, "n": 5, "rmse": 0.05}}}
    record = assess(measured, source, {"calibration": cal}, labels={1: "organ"}, channels=["T1"]).to_dict()
    assert record["qc_predicted_dice"] == {"1": pytest.approx(1.1 * 0.8 * (1 - 1 / 3), abs=1e-4)}  # soft Dice 0.8:
    # uncertainty.organ scores (0.9 − 0.8) / 0.3 = 1/3, the label's only mask evidence
    assert "no training summary" in record["notes"][0]  # a calibration alone is not a summary
    bare = assess(measured, source, {}, labels={1: "organ"}, channels=["T1"]).to_dict()
    assert bare["qc_predicted_dice"] == {}
