"""``medseg plan``: the written pipeline explains every value, validates, and the fingerprint is cached."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from medseg.cli.main import main
from medseg.core import make_affine
from medseg.errors import ConfigError
from medseg.pipeline import Pipeline
from medseg.planning.workflow import parse_duration

from .conftest import box_case, dataset_json, write_case


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "Dataset007_Boxes"
    for i in range(3):
        write_case(root, f"c{i}", *box_case(fg_value=100.0 + 10 * i), make_affine((1.0, 1.0, 3.0)))
    dataset_json(root, {"background": 0, "organ": 1, "cyst": 2}, channels=("T2",), numTraining=3)
    return root


def test_plan_writes_an_explained_valid_pipeline(data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "plan"
    assert main(["plan", str(data), "-o", str(out), "--no-probe", "--explain"]) == 0
    printed = capsys.readouterr().out
    assert "preprocess.resample" in printed and "training.patch_size" in printed and "rule of" in printed
    assert "3 read" in printed
    text = (out / "pipeline.yaml").read_text()
    record = json.loads((out / "plan.json").read_text())
    # every decision is one comment '# value — rule (numbers) [origin]' in the file
    assert len(re.findall(r"^\s*# .* — ", text, flags=re.M)) == len(record["decisions"])
    lines = text.splitlines()
    for key in ("patch_size", "batch_size", "max_epochs", "strides", "channels_per_stage"):
        i = next(i for i, ln in enumerate(lines) if ln.strip().startswith(f"{key}:"))
        assert lines[i - 1].strip().startswith("#"), f"{key} has no reason above it"
    assert "- resample:" in text and "zscore" in text  # T2: per-image z-score
    pipeline = Pipeline.from_yaml(out / "pipeline.yaml")
    assert pipeline.to_dict()["training"]["patch_size"] == record["configurations"]["3d"]["patch"]
    assert main(["validate", str(out / "pipeline.yaml")]) == 0
    assert yaml.safe_load(text)["name"] == "Dataset007_Boxes-3d"
    # a second plan reads nothing: every case comes from fingerprint.json
    assert main(["plan", str(data), "-o", str(out), "--no-probe"]) == 0
    assert "3 cases from cache, 0 read" in capsys.readouterr().out


def test_plan_options(data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "plan"
    assert main(["plan", str(data), "-o", str(out), "--no-probe", "--modality", "CT", "--config", "2d"]) == 0
    pipeline = Pipeline.from_yaml(out / "pipeline.yaml")
    assert [s.name for s in pipeline.preprocess][:3] == ["reorient", "crop_foreground", "percentile_clip"]
    assert pipeline.spec.network.options["spatial_dims"] == 2 and len(pipeline.training_config.patch_size) == 2
    assert main(["plan", str(data), "-o", str(out), "--config", "4d", "--no-probe"]) == 1
    assert "--config must be '3d' or '2d'" in capsys.readouterr().err
    assert main(["plan", str(data), "-o", str(out), "--time-budget", "1h", "--no-probe"]) == 1
    assert "--time-budget needs the device probes" in capsys.readouterr().err


def test_parse_duration() -> None:
    assert parse_duration("7200") == 7200
    assert parse_duration("2h") == 7200
    assert parse_duration("90m") == 5400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45 s") == 45
    for bad in ("", "2x", "-5", "h"):
        with pytest.raises(ConfigError, match="is not a duration"):
            parse_duration(bad)
    for zero in ("0", "0m", "0h0m"):
        with pytest.raises(ConfigError, match=r"--time-budget: '.*' leaves no time to train; .* such as 10m"):
            parse_duration(zero)


def test_plan_and_train_a_clinical_export_take_labels(tmp_path: Path, capsys) -> None:
    """Without --labels an RTSTRUCT export stops at once, listing its ROIs; with them it is planned."""
    from tests.training.test_clinical import _patient

    root = tmp_path / "export"
    _patient(root, 0, "PAT0/CT", "PAT0/RS", {1: "Liver", 2: "GTV"})
    _patient(root, 1, "PAT1/CT", "PAT1/RS", {1: "liver", 2: "GTV"})
    out = tmp_path / "plan"
    for args in (["plan", str(root), "-o", str(out), "--no-probe"], ["train", "--data", str(root), "-o", str(out)]):
        assert main(args) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(root) in err
        assert "ROIs found: GTV (2 patients), Liver (1), liver (1)" in err and "--labels FILE" in err
        assert not (out / "fingerprint.json").exists()  # before any work
    (tmp_path / "labels.yaml").write_text("1: [liver, Liver]\n2: [tumour, GTV]\n")
    assert main(["plan", str(root), "-o", str(out), "--no-probe", "--labels", str(tmp_path / "labels.yaml")]) == 0
    pipeline = Pipeline.from_yaml(out / "pipeline.yaml")
    assert pipeline.labels == {1: "liver", 2: "tumour"}
    assert pipeline.label_synonyms == {1: ["liver", "Liver"], 2: ["tumour", "GTV"]}  # training matches the ROIs too
    assert (
        main(["train", str(out / "pipeline.yaml"), "--data", str(root), "--labels", str(tmp_path / "labels.yaml")]) == 1
    )
    assert "input.labels" in capsys.readouterr().err
