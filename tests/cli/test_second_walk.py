"""The second walk of a new user: results never overwritten, wrong inputs refused before any work."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import medseg
from tests.conftest import ROOT

PIPELINE = ROOT / "pipelines" / "brain_mask_mr.yaml"


def _medseg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medseg.cli", *args], capture_output=True, text=True, timeout=600)


def _one_line_error(res: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert res.returncode in (1, 2), res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_heldout_dicom_case_is_named_and_evaluated_by_its_patient(tmp_path: Path, dicom_series) -> None:
    """predict heldout/LUNG005/CT → LUNG005.nii.gz, which evaluate pairs with the reference LUNG005.nii.gz."""
    series = dicom_series("series", shape=(24, 20, 6), patient_id="LUNG005", modality="MR")
    (tmp_path / "heldout" / "LUNG005").mkdir(parents=True)
    ct = series.rename(tmp_path / "heldout" / "LUNG005" / "CT")
    image = medseg.read(ct)
    ref = image.replace(array=(image.numpy() > 0).astype(np.uint8), kind="label")
    medseg.write(ref, tmp_path / "ref" / "LUNG005.nii.gz")
    out = tmp_path / "out"
    res = _medseg("predict", str(PIPELINE), "-i", str(ct), "-o", str(out), "-e", "nifti", "-q")
    assert res.returncode == 0, res.stderr
    assert (out / "LUNG005.nii.gz").is_file() and not (out / "CT.nii.gz").exists()
    res = _medseg("evaluate", "--pred", str(out), "--gt", str(tmp_path / "ref"), "-o", str(tmp_path / "e.csv"))
    assert res.returncode == 0, res.stderr
    assert "LUNG005" in (tmp_path / "e.csv").read_text()


def test_dicom_exports_of_a_nifti_input_fail_before_the_first_case(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(ROOT / "sample_data" / "lung_ct" / "lung1_image.nrrd", src / "lung1.nrrd")
    out = tmp_path / "out"
    res = _medseg("predict", str(PIPELINE), "-i", str(src), "-o", str(out), "-e", "nifti,rtstruct")
    _one_line_error(res, "-e rtstruct", "lung1 is not DICOM", "--dicom-source DIR")
    assert not out.exists()  # nothing computed, nothing written


def test_an_output_folder_that_cannot_be_written_fails_before_the_first_case(tmp_path: Path) -> None:
    out = tmp_path / "locked"
    out.mkdir()
    if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported on this file system")
    try:
        res = _medseg("predict", str(PIPELINE), "-i", str(ROOT / "sample_data" / "mr_dicom"), "-o", str(out))
    finally:
        subprocess.run(["chattr", "-i", str(out)], check=True)
    _one_line_error(res, str(out), "cannot be written", "choose another -o/--output")
    assert not list(out.iterdir())
