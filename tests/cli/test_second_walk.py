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


def test_export_refuses_a_probability_map(tmp_path: Path) -> None:
    """A uint8 grey-matter probability map (0-255) is not 255 labels to mesh."""
    rng = np.random.default_rng(0)
    prob = medseg.core.Volume(rng.integers(0, 256, (1, 30, 30, 20)).astype(np.uint8), np.eye(4))
    medseg.write(prob, tmp_path / "gm_prob.nii.gz")
    out = tmp_path / "out"
    res = _medseg("export", str(tmp_path / "gm_prob.nii.gz"), "-f", "stl,seg.nrrd", "-o", str(out))
    _one_line_error(res, "gm_prob.nii.gz", "255 distinct values", "probability map", "--labels")
    assert not out.exists() or not list(out.iterdir())
    # fractional probabilities and several channels are refused the same way
    medseg.write(prob.replace(array=prob.numpy().astype(np.float32) / 255), tmp_path / "p.nii.gz")
    _one_line_error(_medseg("export", str(tmp_path / "p.nii.gz"), "-f", "stl", "-o", str(out)), "non-integer values")
    two = prob.replace(array=np.concatenate([prob.numpy() > 128] * 2).astype(np.uint8))
    medseg.write(two, tmp_path / "two.nii.gz")
    _one_line_error(
        _medseg("export", str(tmp_path / "two.nii.gz"), "-f", "stl", "-o", str(out)), "2 channels", "argmax"
    )


def test_export_takes_an_atlas_whose_labels_are_named(tmp_path: Path) -> None:
    import json

    atlas = np.repeat(np.arange(1, 71, dtype=np.uint8), 10).reshape(1, 10, 10, 7)  # 70 labels
    medseg.write(medseg.core.Volume(atlas, np.eye(4), kind="label"), tmp_path / "atlas.nii.gz")
    names = tmp_path / "names.json"
    names.write_text(json.dumps({str(v): f"region_{v}" for v in range(1, 71)}))
    res = _medseg(
        "export", str(tmp_path / "atlas.nii.gz"), "-f", "nifti", "-o", str(tmp_path / "o"), "--labels", str(names)
    )
    assert res.returncode == 0, res.stderr


def test_report_html_lists_every_case_with_previews_and_links(tmp_path: Path) -> None:
    from medseg.batch import discover_cases, run_batch
    from tests.batch.conftest import write_cases
    from tests.batch.processors import ThresholdProcessor

    src = tmp_path / "in"
    write_cases(src, 2)
    (src / "broken.nii.gz").write_text("not a NIfTI")
    out = tmp_path / "out"
    run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False)
    run_batch(discover_cases(src), ThresholdProcessor(), out, progress=False)  # now skipped
    page = (out / "report.html").read_text()
    table = page[page.index("<h2>All cases</h2>") :]
    for case, status in (("case_000", "skipped"), ("case_001", "skipped"), ("broken", "failed")):
        assert f"<td>{case}</td><td>{status}</td>" in table
    assert "<a href='case_000.nii.gz'>label</a>" in table


def test_rgb_png_is_named_as_such_with_the_conversion(tmp_path: Path) -> None:
    from PIL import Image

    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[10:30, 10:30] = (200, 30, 30)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    res = _medseg("predict", str(PIPELINE), "-i", str(tmp_path / "photo.png"), "-o", str(out), "-q")
    assert res.returncode == 1
    assert "photo: is an RGB colour image (3 channels)" in res.stderr and "-colorspace Gray" in res.stderr


def test_info_on_a_folder_with_only_an_rtstruct_names_it_and_its_series(tmp_path: Path) -> None:
    (tmp_path / "pat1" / "RS").mkdir(parents=True)
    shutil.copy(ROOT / "sample_data" / "rtstruct_dicompyler" / "rtss.dcm", tmp_path / "pat1" / "RS")
    res = _medseg("info", str(tmp_path))
    line = _one_line_error(res, "holds no image series", "RT Structure Set", "pat1/RS", "BODY")
    assert "2.16.840.1.113662.2.12.0.3057.1241703565.43" in line
    listing = _medseg("info", str(ROOT / "sample_data" / "mr_dicom")).stdout
    assert "(patient 123565, folder .)" in listing.splitlines()[0]
