"""The model's out-of-fold reference: uncertainty scored against what the model does on unseen cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.inference.predictor import fold_mean
from medseg.inference.sliding_window import class_argmax
from medseg.qc import assess, grid_measurements
from medseg.qc.calibration import calibrate_out_of_fold
from medseg.qc.reference import build_reference, fold_floor, label_values, referenced_score

SOURCE = {"spacing": [1.0] * 3, "shape": [10] * 3, "orientation": "RAS", "modality": ""}


def _measured(soft_dice: float, entropy: float, mirrors: float, folds: float | None = None) -> dict:
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[3:7, 3:7, 3:7] = 1
    measured = grid_measurements(np.ones((1, 10, 10, 10), np.float32), labels, 1.0)
    measured["uncertainty"] = {"1": {"entropy": entropy, "border_entropy": entropy, "margin": 0.5,
                                     "max_softmax": 0.7, "soft_dice": soft_dice}}  # fmt: skip
    measured["agreement"] = {"mirrors": {"1": mirrors}, "folds": {} if folds is None else {"1": folds}}
    return measured


def test_reference_pools_out_of_fold_measurements_and_dice_per_label() -> None:
    cases = [_measured(0.30, 0.50, 0.75), _measured(0.28, 0.52, 0.73), _measured(0.32, 0.48, 0.77)]
    ref = build_reference(cases, [{"1": 0.8}, {"1": 0.7}, {"1": math.nan}])
    one = ref["labels"]["1"]
    assert ref["n"] == 3 and one["soft_dice"]["mean"] == pytest.approx(0.30)
    assert one["soft_dice"]["std"] == pytest.approx(0.02) and one["agreement.mirrors"]["n"] == 3
    assert one["dice"] == {"mean": pytest.approx(0.75), "std": pytest.approx(math.sqrt(0.005)), "n": 2}


def test_referenced_score_is_one_sided_with_a_spread_floor() -> None:
    stats = {"mean": 0.3, "std": 0.001, "n": 8}  # spread floor: max(0.05, 10 % of 0.3) = 0.05
    assert referenced_score(0.9, stats, -1)[0] == 0.0  # better than usual: no evidence
    assert referenced_score(0.2, stats, -1) == (0.0, pytest.approx(2.0))
    assert referenced_score(0.0, stats, -1) == (pytest.approx(1.0), pytest.approx(6.0))
    assert referenced_score(0.45, stats, 1)[0] == pytest.approx(0.25)  # higher is worse: z = 3


def test_fold_floor_is_the_jaccard_triangle_bound() -> None:
    assert fold_floor(1.0) == 1.0 and fold_floor(0.5) == 0.0
    j = 0.8 / 1.2
    assert fold_floor(0.8) == pytest.approx(2 * (2 * j - 1) / (2 * j))


def test_a_less_confident_model_is_not_flagged_on_its_usual_cases_but_on_worse_ones() -> None:
    ref = build_reference([_measured(0.28 + 0.01 * i, 0.5, 0.75) for i in range(5)], [{"1": 0.76}] * 5)
    usual = assess(_measured(0.29, 0.51, 0.74, folds=0.5), SOURCE, {}, labels={1: "spleen"}, channels=["CT"],
                   reference=ref)  # fmt: skip
    assert max(s.score for s in usual.signals) == 0.0  # fixed thresholds would flag all of these
    fixed = assess(_measured(0.29, 0.51, 0.74, folds=0.5), SOURCE, {}, labels={1: "spleen"}, channels=["CT"])
    assert fixed.evidence("mask") == pytest.approx(1.0)
    worse = assess(_measured(0.05, 0.8, 0.3, folds=0.1), SOURCE, {}, labels={1: "spleen"}, channels=["CT"],
                   reference=ref)  # fmt: skip
    scores = {s.name: s.score for s in worse.signals}
    # soft Dice 0.05 vs 0.30 ± 0.05 (the floor): z = 5; mirrors 0.3 vs 0.75 ± 0.075: z = 6
    assert scores["uncertainty.spleen"] == pytest.approx(0.75) and scores["agreement.mirrors.spleen"] == pytest.approx(
        1.0
    )
    assert scores["agreement.folds.spleen"] == pytest.approx(min((fold_floor(0.76) - 0.1) / 0.25, 1.0))
    assert "out-of-fold" in worse.flags[0]


def test_calibration_reassesses_out_of_fold_cases_and_the_score_follows_predicted_dice() -> None:
    records = [{"fold": i % 2, "measured": _measured(0.28 + 0.01 * i, 0.5, 0.75), "source": SOURCE} for i in range(6)]
    dice = [{"1": 0.74 + 0.01 * i} for i in range(6)]
    cal = calibrate_out_of_fold(records, dice, {0: {}, 1: {}}, labels={1: "spleen"}, channels=["CT"])
    ratio = cal["labels"]["1"]["ratio"]
    assert cal["reference"]["labels"]["1"]["soft_dice"]["n"] == 6
    assert ratio == pytest.approx(sum(0.28 + 0.01 * i for i in range(6)) and 2.6, rel=0.05)  # Dice / soft_dice
    summary = {"calibration": cal}
    good = assess(_measured(0.30, 0.5, 0.75), SOURCE, summary, labels={1: "spleen"}, channels=["CT"])
    poor = assess(_measured(0.20, 0.5, 0.75), SOURCE, summary, labels={1: "spleen"}, channels=["CT"])
    assert good.predicted_dice["1"] == pytest.approx(ratio * 0.30)
    assert poor.predicted_dice["1"] < 0.7 < good.predicted_dice["1"]
    assert poor.score > 0.5 > good.score  # a case predicted below 0.7 ranks above a good one, and is flagged
    assert good.mask_evidence() == pytest.approx((1 - ratio * 0.30) / 0.6)


def test_label_values_and_fold_mean_use_each_fold_like_an_out_of_fold_prediction() -> None:
    per_fold = [{"1": {"soft_dice": 0.8, "entropy": 0.2, "border_entropy": 0.3, "margin": 0.6, "max_softmax": 0.9}}, {}]
    mean = fold_mean(per_fold)
    assert mean["1"]["soft_dice"] == pytest.approx(0.4) and mean["1"]["entropy"] == pytest.approx(0.6)
    measured = {
        "uncertainty": {"1": {"soft_dice": 0.1}},
        "fold_uncertainty": mean,
        "agreement": {"mirrors": {"1": 0.9}},
    }
    assert label_values(measured)["1"]["soft_dice"] == pytest.approx(0.4)
    assert label_values(measured)["1"]["agreement.mirrors"] == 0.9


def test_class_argmax_matches_torch_argmax_ties_to_the_lower_class() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, (2, 5, 6, 7, 3), generator=g).float()  # many ties
    assert torch.equal(class_argmax(x, dim=1).long(), torch.argmax(x, dim=1))
    assert class_argmax(x, dim=1).dtype == torch.uint8
