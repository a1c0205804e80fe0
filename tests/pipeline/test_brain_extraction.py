"""deepbet's pretrained networks through pipelines/brain_extraction.yaml agree with deepbet's own run_bet."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import medseg
from medseg.core import Volume
from medseg.metrics import dice
from medseg.pipeline import Pipeline
from tests.conftest import ROOT, SAMPLE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("deepbet") is None, reason="needs pip install 'medseg[deepbet]'"),
]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")  # inside deepbet's run_bet
def test_medseg_matches_run_bet_and_the_bet_mask(tmp_path) -> None:
    from deepbet import run_bet

    from medseg.demo import heldout_copy

    pipeline = Pipeline.from_yaml(ROOT / "pipelines" / "brain_extraction.yaml")
    predictor = pipeline.predictor(device="cpu")
    t1 = medseg.read(SAMPLE / "colin27" / "ch2.nii.gz")
    bet = medseg.read(SAMPLE / "colin27" / "ch2bet.nii.gz")
    reference = Volume((bet.numpy() > 0).astype(np.uint8), bet.affine, kind="label")
    image, ref_lps = heldout_copy(t1, reference)  # LPS, 1.3 × 1.1 × 1.6 mm, other contrast and noise
    lps = medseg.write(image, tmp_path / "colin27_lps.nii.gz")
    for source, ref in ((SAMPLE / "colin27" / "ch2.nii.gz", reference), (lps, ref_lps)):
        ours = predictor.predict(source)
        assert ours.grid.matches(medseg.read(source).grid)
        mask = tmp_path / f"deepbet_{source.name}"
        run_bet([str(source)], mask_paths=[str(mask)], no_gpu=True)
        theirs = medseg.read(mask)
        assert dice(ours.numpy()[0], theirs.numpy()[0], label=1) >= 0.99
        assert dice(ours.numpy()[0], ref.numpy()[0], label=1) >= 0.93
