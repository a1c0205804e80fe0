"""A planned pipeline draws every label: nnU-Net's class-first foreground sampling, on phantoms with a lesion."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.data import write_phantom_dataset


def centred_on(cases: list, label: int, balanced: bool, draws: int = 400) -> float:
    """Share of foreground patches (5³, the trainer's stream) whose centre voxel is ``label``."""
    from medseg.training.loader import PatchStream

    stream = PatchStream(cases, (5, 5, 5), 1, foreground_ratio=1.0, class_balanced=balanced, seed=0)
    rng = np.random.default_rng(0)
    hits = sum(int(stream.batch(rng)[1][0, 0, 2, 2, 2]) == label for _ in range(draws))
    return hits / draws


def test_the_plan_draws_a_small_lesion_as_often_as_the_liver(tmp_path: Path) -> None:
    from medseg.pipeline import Pipeline
    from medseg.planning.planner import PlanOptions
    from medseg.planning.workflow import plan_dataset
    from medseg.training import load_dataset
    from medseg.training.cache import prepare_dataset

    data = write_phantom_dataset(tmp_path / "Dataset001_Phantom", 2, (48, 48, 32), (1.5, 1.5, 2.5))
    files = plan_dataset(data, tmp_path / "plan", PlanOptions(device="cpu"), probe=False)
    pipeline = Pipeline.from_yaml(files.pipeline)
    assert pipeline.training_config.class_balanced
    why = next(d for d in files.plan.decisions if d.key == "training.class_balanced")
    assert why.origin == "nnU-Net" and "lesion" in why.numbers  # the shares voxel-drawn patches would have

    cases = prepare_dataset(load_dataset(data), pipeline.apply_preprocess, tmp_path / "cache")
    lesion = 4  # ≈ 10 voxels of ≈ 3,000 foreground voxels per case
    by_voxels, planned = centred_on(cases, lesion, False), centred_on(cases, lesion, True)
    assert by_voxels < 0.03 and 0.17 < planned < 0.33  # one class in four, drawn first
