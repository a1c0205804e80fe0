"""The QC calibration: a monotone linear fit of out-of-fold Dice on qc_score, and its prediction."""

from __future__ import annotations

import math

import pytest

from medseg.qc import assess, grid_measurements
from medseg.qc.calibration import fit_calibration, predicted_dice


def test_fit_is_linear_and_never_rises_with_the_score() -> None:
    scores = [0.0, 0.5, 1.0, 0.25]
    dice = [{"1": 0.9, "2": 0.5}, {"1": 0.7, "2": 0.6}, {"1": 0.5, "2": 0.7}, {"1": 0.8, "2": math.nan}]
    cal = fit_calibration(scores, dice)
    one, two = cal["labels"]["1"], cal["labels"]["2"]
    assert one["slope"] == pytest.approx(-0.4) and one["intercept"] == pytest.approx(0.9) and one["n"] == 4
    assert two["slope"] == 0.0 and two["intercept"] == pytest.approx(0.6) and two["n"] == 3  # rising → flat
    assert predicted_dice(cal, 0.75) == pytest.approx({"1": 0.6, "2": 0.6})
    assert predicted_dice({"labels": {"1": {"intercept": 1.3, "slope": -0.1}}}, 0.0) == {"1": 1.0}


def test_assessment_gives_qc_predicted_dice_from_the_calibration_in_the_summary() -> None:
    import numpy as np

    labels = np.zeros((8, 8, 8), np.uint8)
    labels[2:5, 2:5, 2:5] = 1
    measured = grid_measurements(np.ones((1, 8, 8, 8), np.float32), labels, 1.0)
    source = {"spacing": [1.0] * 3, "shape": [8] * 3, "orientation": "RAS", "modality": ""}
    cal = {"feature": "qc_score", "labels": {"1": {"intercept": 0.9, "slope": -0.5, "n": 5, "rmse": 0.05}}}
    record = assess(measured, source, {"calibration": cal}, labels={1: "organ"}, channels=["T1"]).to_dict()
    assert record["qc_predicted_dice"] == {"1": pytest.approx(0.9 - 0.5 * record["qc_score"], abs=1e-4)}
    assert "no training summary" in record["notes"][0]  # a calibration alone is not a summary
    bare = assess(measured, source, {}, labels={1: "organ"}, channels=["T1"]).to_dict()
    assert bare["qc_predicted_dice"] == {}
