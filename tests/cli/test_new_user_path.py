"""The path a new user walks, as subprocesses: predict → evaluate → export with the shipped demo model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import medseg
from medseg.core import Volume
from tests.conftest import ROOT

PIPELINE = ROOT / "pipelines" / "brain_mask_mr.yaml"


def _medseg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medseg.cli", *args], capture_output=True, text=True, timeout=600)


def _one_line_error(res: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert res.returncode == 1, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def t1(tmp_path_factory) -> tuple[Path, Path]:
    """Colin27 T1 cropped around the head at 2 mm, and its brain mask: a small real case."""
    from medseg.transforms import Resample

    root = tmp_path_factory.mktemp("t1")
    image = Resample(spacing=(2.0, 2.0, 2.0))(medseg.read(ROOT / "sample_data" / "colin27" / "ch2.nii.gz"))
    brain = medseg.read(ROOT / "sample_data" / "colin27" / "ch2bet.nii.gz")
    mask = Resample(spacing=(2.0, 2.0, 2.0), mode="nearest")(
        brain.replace(array=(brain.numpy() > 0).astype(np.uint8), kind="label")
    )
    medseg.write(image.replace(history=()), root / "in" / "colin.nii.gz")
    medseg.write(mask.replace(history=()), root / "ref" / "colin.nii.gz")
    return root / "in", root / "ref"


@pytest.fixture(scope="module")
def predicted(t1, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pred")
    res = _medseg("predict", str(PIPELINE), "-i", str(t1[0]), "-o", str(out), "-e", "nifti,seg.nrrd,png,stats", "-q")
    assert res.returncode == 0, res.stderr
    return out


def test_predict_then_evaluate_on_what_predict_wrote(predicted: Path, t1, tmp_path: Path) -> None:
    assert {p.name for p in predicted.glob("colin*")} >= {"colin.nii.gz", "colin.seg.nrrd", "colin_preview.png"}
    res = _medseg("evaluate", "--pred", str(predicted), "--gt", str(t1[1]), "-o", str(tmp_path / "eval.csv"))
    assert res.returncode == 0, res.stderr
    assert "label 1 (brain): dice 0.9" in res.stdout  # names from the run's provenance
    assert "left out" not in res.stderr  # the provenance says which file is the label map


def test_export_uses_the_label_names_predict_wrote(predicted: Path, t1, tmp_path: Path) -> None:
    res = _medseg("export", str(predicted / "colin.nii.gz"), "-r", str(t1[0] / "colin.nii.gz"), "-f", "stl,stats",
                  "-o", str(tmp_path))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "colin_brain.stl").exists()
    stats = json.loads((tmp_path / "colin_stats.json").read_text())
    assert [r["name"] for r in stats["labels"]] == ["brain"]
    res = _medseg("export", str(predicted / "colin.seg.nrrd"), "-f", "nifti", "-o", str(tmp_path / "from_seg"))
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "from_seg" / "colin.labels.json").read_text()) == {"1": "brain"}


@pytest.mark.parametrize("spelling", ["seg.nrrd,dicom-seg", "seg_nrrd,dicom_seg", "SEG.NRRD"])
def test_every_command_accepts_both_exporter_spellings(spelling: str, tmp_path: Path) -> None:
    from medseg.cli.export import parse_formats
    from medseg.pipeline.processor import PipelineProcessor

    names = parse_formats([spelling])
    assert names[0] == "seg_nrrd"
    pipeline = medseg.pipeline.Pipeline.from_yaml(PIPELINE)
    processor = PipelineProcessor(pipeline, pipeline.checkpoint_paths(), exporters=spelling.split(","))
    assert [e.name for e in processor.export_specs()] == names


def test_a_wrong_exporter_stops_predict_before_any_case(t1, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = _medseg("predict", str(PIPELINE), "-i", str(t1[0]), "-o", str(out), "-e", "nifti,sttl")
    _one_line_error(res, "unknown exporter 'sttl'", "did you mean 'stl'", "seg_nrrd (seg.nrrd)")
    assert not out.exists()


def test_help_lists_every_exporter() -> None:
    from medseg.cli.main import EXPORTER_NAMES
    from medseg.export import EXPORTERS, exporter_name

    listed = [n.strip() for n in EXPORTER_NAMES.split(",")]
    assert sorted(exporter_name(n) for n in listed) == EXPORTERS.names()
    for command in ("predict", "export"):
        assert "rtstruct" in _medseg(command, "--help").stdout


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "gpu"])
def test_predict_on_a_gpu_that_is_not_there_is_a_clear_error(device: str, t1, tmp_path: Path) -> None:
    res = _medseg("predict", str(PIPELINE), "-i", str(t1[0]), "-o", str(tmp_path / "o"), "--device", device)
    _one_line_error(res, "--device", "no CUDA GPU", "auto or cpu")
    assert not (tmp_path / "o").exists()


def test_constant_image_and_empty_prediction_are_reported(tmp_path: Path) -> None:
    import yaml

    src = tmp_path / "in"
    medseg.write(Volume(np.zeros((1, 40, 40, 30), np.int16), np.diag([3.0, 3.0, 3.0, 1.0])), src / "blank.nii.gz")
    (src / "notes.txt").write_text("not an image")
    config = yaml.safe_load(PIPELINE.read_text())  # the demo pipeline, with post-processing that empties the mask
    config["postprocess"] = [{"remove_small_components": {"min_size_mm3": 1e12}}]
    config["inference"]["checkpoints"] = [str(ROOT / "sample_data" / "checkpoints" / "brain_mask_mr.pt")]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    res = _medseg("predict", str(tmp_path / "p.yaml"), "-i", str(src), "-o", str(out), "-q")
    assert res.returncode == 0, res.stderr
    assert "warning: blank: " in res.stderr and "the image is constant (every voxel = 0)" in res.stderr
    assert "warning: blank: " in res.stderr and "the mask is empty" in res.stderr
    assert "not read: " in res.stderr and "notes.txt" in res.stderr
    info = [line for line in res.stderr.splitlines() if line.startswith("INFO")]
    assert len(info) == 1 and "network precision: " in info[0]  # one line per run; per-case details are -v
    html = (out / "report.html").read_text()
    assert "Warnings" in html and "constant" in html and "notes.txt" in html
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["with_warnings"] == 1 and report["skipped_inputs"][0]["path"].endswith("notes.txt")


def test_export_of_a_seg_keeps_its_segment_names_and_a_plain_stem(tmp_path: Path) -> None:
    import shutil

    seg = tmp_path / "volume.seg.dcm"
    shutil.copy(ROOT / "sample_data" / "dicom_seg" / "liver_seg.dcm", seg)
    res = _medseg("export", str(seg), "-f", "nifti,stl", "-o", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["volume.labels.json", "volume.nii.gz", "volume_Liver.stl"]
    assert json.loads((tmp_path / "out" / "volume.labels.json").read_text()) == {"1": "Liver"}
