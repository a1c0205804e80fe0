"""The time budget is honoured: a plan for a few seconds trains within 1.5× of them, measured end to end."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest

from medseg.pipeline import Pipeline
from medseg.planning.planner import PlanOptions
from medseg.planning.workflow import plan_dataset
from tests.training.conftest import write_nnunet

BUDGET_S = 8.0


@pytest.mark.slow
def test_tiny_plan_trains_within_its_budget(tmp_path: Path) -> None:
    data = write_nnunet(tmp_path / "Dataset001_Phantom", n_cases=4, shape=(24, 24, 24), spacing=(2.5, 2.5, 2.5))
    files = plan_dataset(data, tmp_path / "plan", PlanOptions(device="cpu", time_budget_s=BUDGET_S, n_folds=4))
    pipeline = Pipeline.from_yaml(files.pipeline)
    s = pipeline.training_config
    assert s.max_time_s is not None and 0 < s.max_time_s <= BUDGET_S
    t0 = time.perf_counter()
    # everything a user waits for: reading and pre-processing the cases, the epochs, validation, checkpoints
    result = pipeline.train(data, tmp_path / "run", fold=0, n_folds=4, progress=False)
    wall = time.perf_counter() - t0
    with result.log_csv.open() as f:
        rows = list(csv.DictReader(f))
    loop = sum(float(r["time_s"]) for r in rows)
    detail = (
        f"wall {wall:.1f} s (loop {loop:.1f} s over {len(rows)} of {s.max_epochs} epochs × {s.iterations_per_epoch} "
        f"iterations) for a {BUDGET_S:g} s budget; plan: {files.plan.configurations[files.plan.chosen].notes}"
    )
    print(detail)
    assert wall <= 1.5 * BUDGET_S, detail
    assert len(rows) >= 1 and "val_dice_mean" in rows[-1], detail
