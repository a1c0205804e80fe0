"""Every README code block works when copied literally (run after the demo, as the README says).

Blocks run in README order in one working folder that looks like the repository root after ``medseg demo``,
so later blocks find what earlier ones made. ``test_every_block_is_checked`` fails when a block is added that
no test runs or validates.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
VENV = ROOT / ".venv"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(heading: str, language: str) -> list[str]:
    """The fenced ``language`` blocks under the ``## heading`` section, in order."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    found = [body for lang, body in _FENCE.findall(section) if lang == language]
    assert found, f"no {language} block under '## {heading}'"
    return found


def block(heading: str, language: str) -> str:
    return blocks(heading, language)[0]


#: (section, language) → number of blocks the tests below run or validate; the set-up block is what CI runs.
CHECKED = {
    ("Set-up: two commands", "bash"): 1,
    ("Command line", "bash"): 1,
    ("From a dataset to a tuned pipeline: `medseg plan`", "bash"): 1,
    ("Pipelines (`pipelines/*.yaml`)", "yaml"): 1,
    ("Models from elsewhere: TorchScript/ONNX, two-stage pipelines, model packages", "yaml"): 1,
    ("Models from elsewhere: TorchScript/ONNX, two-stage pipelines, model packages", "bash"): 1,
    ("Python", "python"): 1,
    ("Clinical DICOM labels (RTSTRUCT and SEG)", "python"): 1,
    ("Clinical DICOM labels (RTSTRUCT and SEG)", "bash"): 2,
    ("Archives (PACS)", "console"): 1,  # run against Orthanc by tests/archive/test_readme_pacs.py
}


def test_every_block_is_checked() -> None:
    found: dict[tuple[str, str], int] = {}
    for part in README.split("\n## ")[1:]:
        heading = part.split("\n", 1)[0]
        for lang, _ in _FENCE.findall(part):
            found[(heading, lang)] = found.get((heading, lang), 0) + 1
    unchecked = {k: v for k, v in found.items() if CHECKED.get(k) != v}
    assert not unchecked, f"README blocks no test runs (or counts that changed): {unchecked}"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A working folder that looks like the repository root after 'medseg demo'."""
    if not (VENV / "bin" / "activate").exists() or Path(sys.prefix).resolve() != VENV.resolve():
        pytest.skip("runs where the README's set-up made .venv (CI does)")
    root = tmp_path_factory.mktemp("checkout")
    for name in ("sample_data", "pipelines", ".venv"):
        (root / name).symlink_to(ROOT / name)
    demo = subprocess.run([".venv/bin/medseg", "demo"], cwd=root, capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr[-3000:]
    return root


def run_bash(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    res = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=cwd, capture_output=True, text=True, timeout=1200, env={**os.environ, **env},
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res


@pytest.mark.slow
def test_command_line_section(checkout: Path) -> None:
    res = run_bash(block("Command line", "bash"), checkout)
    assert (checkout / "predictions" / "colin27_lps.seg.nrrd").exists()
    assert "label 1 (brain): dice" in res.stdout
    assert (checkout / "exports" / "colin27_lps_brain.stl").exists()
    assert (checkout / "exports" / "colin27_lps_viewer.html").exists()


@pytest.mark.slow
def test_plan_section(checkout: Path) -> None:
    res = run_bash(block("From a dataset to a tuned pipeline: `medseg plan`", "bash"), checkout)
    assert "network.options.spatial_dims" in res.stdout  # --explain's table
    assert (checkout / "runs" / "phantom" / "final_pipeline.yaml").is_file()
    assert (checkout / "out" / "phantom_000.nii.gz").is_file()


def test_pipeline_and_model_yaml_blocks_validate(tmp_path: Path) -> None:
    """The YAML examples are pipelines medseg accepts (the TorchScript one with a real archive beside it)."""
    import torch

    from medseg.pipeline import Pipeline
    from tests.networks.files import save_torchscript

    (tmp_path / "ct.yaml").write_text(block("Pipelines (`pipelines/*.yaml`)", "yaml"))
    assert Pipeline.from_yaml(tmp_path / "ct.yaml").labels[4] == "lesion"
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.Softmax(dim=1))
    save_torchscript(net, tmp_path / "model.pt")
    fragment = block("Models from elsewhere: TorchScript/ONNX, two-stage pipelines, model packages", "yaml")
    (tmp_path / "ts.yaml").write_text(
        "name: external\ninput: {modality: CT, channels: [CT], labels: {1: organ}}\n" + fragment
    )
    assert Pipeline.from_yaml(tmp_path / "ts.yaml").spec.network.name == "torchscript"


@pytest.mark.slow
def test_models_section(checkout: Path, tmp_path: Path) -> None:
    script = block("Models from elsewhere: TorchScript/ONNX, two-stage pipelines, model packages", "bash")
    res = run_bash(script, checkout, MEDSEG_HOME=str(tmp_path / "home"))
    assert (checkout / "bet" / "ch2.nii.gz").is_file() and (checkout / "brain-mask.zip").is_file()
    assert "brain-mask-mr" in res.stdout
    assert (checkout / "predictions_package" / "colin27_lps.nii.gz").is_file()


@pytest.mark.slow
def test_python_section(checkout: Path) -> None:
    res = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", block("Python", "python")],
        cwd=checkout, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert (checkout / "colin27_lps_mask.nii.gz").exists()


@pytest.mark.slow
def test_clinical_section(checkout: Path) -> None:
    section = "Clinical DICOM labels (RTSTRUCT and SEG)"
    res = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", block(section, "python")],
        cwd=checkout, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "{1: 'body'}" in res.stdout
    train, export = blocks(section, "bash")
    run_bash(train, checkout)
    assert (checkout / "pred" / "P003.rtstruct.dcm").is_file()
    assert (checkout / "Dataset501_Organs" / "dataset.json").is_file() and (
        checkout / "plan_export" / "pipeline.yaml"
    ).is_file()
    run_bash(export, checkout)
    assert (checkout / "out" / "P003.rtstruct.dcm").is_file()


def test_setup_section_is_what_ci_runs() -> None:
    setup = block("Set-up: two commands", "bash")
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(line for line in setup.splitlines() if "pytest" in line).split("#")[0].strip()
    assert test_command in ci
