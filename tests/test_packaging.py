"""What a wheel holds: every medseg package, the shipped pipelines and the demo's sample data, usable by name."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import ROOT

DATA_PACKAGES = {
    "medseg.pipelines",
    "medseg.sample_data",
    "medseg.sample_data.checkpoints",
    "medseg.sample_data.colin27",
    "medseg.sample_data.mr_dicom",
    "medseg.export.assets",
}


def test_pyproject_lists_every_package() -> None:
    from setuptools import find_packages

    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads TOML without a package")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    code = set(find_packages(where=str(ROOT), include=["medseg*"]))
    assert listed - DATA_PACKAGES == code, (
        f"add {sorted(code - listed)} to [tool.setuptools] packages in pyproject.toml"
        if code - listed
        else f"remove {sorted(listed - DATA_PACKAGES - code)} from pyproject.toml"
    )


def test_names_resolve_to_shipped_pipelines() -> None:
    from medseg.models.targets import resolve_target
    from medseg.pipeline.shipped import shipped_pipelines

    assert {"brain_extraction", "ct_organs", "brain_mask_mr"} <= set(shipped_pipelines())
    assert resolve_target("ct_organs") == ROOT / "pipelines" / "ct_organs.yaml"
    assert resolve_target(ROOT / "pipelines" / "ct_organs.yaml") == ROOT / "pipelines" / "ct_organs.yaml"


@pytest.mark.slow
def test_wheel_in_a_fresh_venv(tmp_path: Path) -> None:
    """Build the wheel, install it alone into a new venv that borrows this environment's dependencies (no
    download, no second torch) but not this checkout, and use shipped pipelines by name from another folder."""
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(wheels), "-q"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("medseg-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    (site / "_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["MEDSEG_HOME"] = str(tmp_path / "home")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()

    def medseg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(venv / "bin" / "medseg"), *args], capture_output=True, text=True, cwd=work,
                              env=env, timeout=600)  # fmt: skip

    where = subprocess.run([python, "-c", "import medseg; print(medseg.__file__)"], capture_output=True, text=True,
                           cwd=work, env=env, check=True).stdout  # fmt: skip
    assert where.startswith(str(site)), where  # the wheel's medseg, not the checkout
    validate = medseg("validate", "ct_organs")
    assert validate.returncode == 0 and "valid pipeline 'ct-organs'" in validate.stdout, validate.stderr
    # a shipped pipeline's relative checkpoint path (../sample_data/checkpoints/...) holds inside the wheel
    sample = site / "medseg" / "sample_data"
    predict = medseg("predict", "brain_mask_mr", "-i", str(sample / "mr_dicom"), "-o", "out", "-e", "nifti", "-q")
    assert predict.returncode == 0, predict.stdout + predict.stderr
    assert (work / "out" / "123565.nii.gz").is_file()  # a DICOM case is named by its PatientID
    missing = medseg("predict", "no_such_pipeline", "-i", str(sample / "mr_dicom"), "-o", "out")
    assert (
        missing.returncode == 1 and "no such pipeline file, model package, installed model or shipped" in missing.stderr
    )
    import importlib.util

    if importlib.util.find_spec("deepbet") is not None:  # CI installs medseg[deepbet]
        brain = medseg("predict", "brain_extraction", "-i", str(sample / "colin27" / "ch2.nii.gz"), "-o", "bet", "-q")
        assert brain.returncode == 0, brain.stdout + brain.stderr
        assert (work / "bet" / "ch2.nii.gz").is_file()


def test_missing_checkpoint_of_a_pipeline_file_is_named_before_any_case(tmp_path: Path) -> None:
    from medseg.cli.main import main

    text = (ROOT / "pipelines" / "brain_mask_mr.yaml").read_text()
    (tmp_path / "p.yaml").write_text(text)
    from medseg.errors import CheckpointError

    with pytest.raises(
        CheckpointError, match=r"inference.checkpoints\[0\]: .*brain_mask_mr.pt: no such checkpoint file"
    ):
        from medseg.cli.predict import load_pipeline_and_checkpoints

        load_pipeline_and_checkpoints(tmp_path / "p.yaml", None)
    assert main(["predict", str(tmp_path / "p.yaml"), "-i", str(tmp_path), "-o", str(tmp_path / "o")]) == 1
