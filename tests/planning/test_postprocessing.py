"""Empirical post-processing: a step is kept only when it raises the cross-validated Dice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.cli.main import main
from medseg.core import Volume, make_affine
from medseg.io import write
from medseg.pipeline import Pipeline
from medseg.planning.postprocessing import candidates, choose
from tests.training.conftest import write_nnunet

AFFINE = make_affine((1.0, 1.0, 1.0))


def _write(path: Path, array: np.ndarray) -> Path:
    write(Volume(array[None].astype(np.uint8), AFFINE, kind="label"), path)
    return path


def _pair(tmp_path: Path, i: int) -> tuple[Path, Path]:
    ref = np.zeros((32, 32, 32), np.uint8)
    ref[4:14, 4:14, 4:14] = 1  # organ: one piece
    ref[20:24, 20:24, 20:24] = 2  # lesions: two pieces
    ref[26:30, 4:8, 4:8] = 2
    pred = ref.copy()
    pred[28:30, 28:30, 28:30] = 1  # a false organ island far away: keep-largest helps
    pred[8, 8, 8] = 0  # a hole inside the organ: filling helps
    pred[12, 28, 2] = 2  # a one-voxel false lesion: removing small components helps
    return _write(tmp_path / f"p{i}.nii.gz", pred), _write(tmp_path / f"r{i}.nii.gz", ref)


def test_steps_are_kept_only_when_they_raise_dice(tmp_path: Path) -> None:
    pipeline = Pipeline(
        input={"labels": {1: "organ", 2: "lesion"}},
        postprocess=[
            {"remove_small_components": {"min_size_mm3": 5.0, "labels": [2]}},
            {"fill_holes": {"mode": "3d", "labels": [1, 2]}},
        ],
    )
    cases = {f"c{i}": _pair(tmp_path, i) for i in range(2)}
    steps, baseline, final, trials = choose(cases, candidates(pipeline), [1, 2])
    kept = {json.dumps(t.step, sort_keys=True): t.kept for t in trials}
    # whole-foreground keep-largest would delete the lesions: not kept; per label only for the organ
    assert (
        kept[json.dumps({"keep_largest_component": {"connectivity": 26, "per_label": False}}, sort_keys=True)] is False
    )
    assert kept[
        json.dumps({"keep_largest_component": {"connectivity": 26, "labels": [1], "per_label": True}}, sort_keys=True)
    ]
    assert not kept[
        json.dumps({"keep_largest_component": {"connectivity": 26, "labels": [2], "per_label": True}}, sort_keys=True)
    ]
    names = [next(iter(s)) for s in steps]
    assert names == ["keep_largest_component", "remove_small_components", "fill_holes"]
    assert steps[-1]["fill_holes"]["labels"] == [1]  # label 2 has no hole: filling it changes nothing → not kept
    assert final[1] > baseline[1] and final[2] > baseline[2]
    assert final == {1: 1.0, 2: 1.0}  # every planted error is undone


@pytest.mark.slow
def test_train_without_pipeline_plans_then_chooses_postprocessing(tmp_path: Path, capsys) -> None:
    data = write_nnunet(tmp_path / "Dataset001_Phantom", n_cases=4, shape=(24, 24, 24), spacing=(2.5, 2.5, 2.5))
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "-o", str(run), "--fold", "all", "--folds", "2", "--time-budget", "4"]
    assert main([*args, "--device", "cpu"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert (run / "pipeline.yaml").exists() and (run / "fingerprint.json").exists()
    final = Pipeline.from_yaml(run / "final_pipeline.yaml")
    assert [p.name for p in final.checkpoint_paths()] == ["best.pt", "best.pt"]
    record = json.loads((run / "postprocessing.json").read_text())
    assert record["cases"] == 4 and record["trials"] and "postprocess" in out
    assert final.to_dict()["postprocess"] == Pipeline(postprocess=record["steps"]).to_dict()["postprocess"]
    calibration = record["qc_calibration"]  # out-of-fold features → Dice per label (medseg.qc.calibration)
    assert calibration["feature"] == "expected_dice" and set(calibration["labels"]) <= {"1", "2"}
    assert all(f["ratio"] >= 0 and f["n"] <= 4 for f in calibration["labels"].values())
    for case in json.loads((run / "splits.json").read_text())[0]["val"]:  # the features the fit was made on
        assert set(json.loads((run / "cv_predictions" / f"{case}.qc.json").read_text())["features"]) <= {"1", "2"}
    for k in range(2):
        ckpt = torch.load(run / f"fold_{k}" / "best.pt", weights_only=True)
        assert ckpt["config"]["postprocess"] == record["steps"]
        assert ckpt["training_summary"]["calibration"] == calibration and ckpt["training_summary"]["n_cases"] == 2
    text = (run / "final_pipeline.yaml").read_text()
    assert "# mean Dice per label before → after" in text
    # the planned pipeline is reused when training resumes in the same run folder
    assert main([*args, "--device", "cpu"]) == 0
    assert "planned earlier, reused" in capsys.readouterr().out
