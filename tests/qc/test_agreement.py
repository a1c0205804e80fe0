"""The agreement between mirrored passes and between folds, collected while predicting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medseg.core.volume import Volume
from medseg.inference import Predictor
from medseg.inference.sliding_window import PassAgreement, sliding_window_inference


class Threshold(nn.Module):
    """Class 1 where the window's X coordinate (voxels from its low side) is at least ``start``: not
    mirror-symmetric, so a pass mirrored along X puts the mask on the other side."""

    def __init__(self, start: int) -> None:
        super().__init__()
        self.start = start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(x.shape[2], dtype=x.dtype).view(1, 1, -1, 1, 1).expand(x.shape[0], 1, *x.shape[2:])
        return torch.cat([torch.zeros_like(ramp), ramp - self.start + 0.5], dim=1)


def test_pass_agreement_counts_the_dice_between_the_first_pass_and_the_others() -> None:
    agreement = PassAgreement()
    first = torch.tensor([[0, 1, 1, 1, 2]])
    agreement.add_labels(first, 3, first=True)
    agreement.add_labels(torch.tensor([[0, 0, 1, 1, 2]]), 3, first=False)
    assert agreement.dice() == pytest.approx({0: 2 / 3, 1: 0.8, 2: 1.0})
    with pytest.raises(Exception, match="before the first pass"):
        PassAgreement().add_labels(first, 3, first=False)


def test_mirrored_passes_disagree_when_the_network_is_not_symmetric() -> None:
    image = torch.zeros((1, 1, 8, 4, 4))
    agreement = PassAgreement()
    sliding_window_inference(image, Threshold(6), patch_size=(8, 4, 4), mirror_axes=(0,), agreement=agreement)
    # unmirrored: class 1 at x ∈ {6, 7}; mirrored along X: at x ∈ {0, 1}: no overlap
    assert agreement.dice()[1] == 0.0 and agreement.dice()[0] == pytest.approx(2 * 4 / 12)
    same = PassAgreement()
    sliding_window_inference(image, Threshold(6), patch_size=(8, 4, 4), mirror_axes=(1,), agreement=same)
    assert same.dice() == {0: 1.0, 1: 1.0}  # mirrored along Y: the same mask


def test_predictor_records_fold_and_mirror_agreement_only_when_measuring() -> None:
    volume = Volume(np.zeros((1, 8, 4, 4), np.float32), np.eye(4))
    folds = Predictor([Threshold(4), Threshold(6)], patch_size=(8, 4, 4), device="cpu")
    measured: dict = {}
    folds.predict_preprocessed(volume, folds.run_preprocess(volume), measurements=measured)
    # fold 0: x ∈ 4..7 (64 voxels), fold 1: x ∈ 6..7 (32): Dice 2·32 / 96
    assert measured["agreement"]["folds"]["1"] == pytest.approx(2 / 3) and measured["agreement"]["mirrors"] == {}
    mirrored = Predictor(Threshold(6), patch_size=(8, 4, 4), mirror_axes=(0,), device="cpu")
    measured = {}
    mirrored.predict_preprocessed(volume, mirrored.run_preprocess(volume), measurements=measured)
    assert measured["agreement"] == {"mirrors": {"0": pytest.approx(2 / 3), "1": 0.0}, "folds": {}}
