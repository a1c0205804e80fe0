"""``medseg export``: several formats per run, label names, DICOM SEG out and in, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from medseg.core import Volume
from medseg.io import read, write


def _medseg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medseg.cli", *args], capture_output=True, text=True, timeout=180)


def test_export_several_formats(sample, tmp_path):
    labels = tmp_path / "names.json"
    labels.write_text(json.dumps({"1": "nodule"}))
    out = tmp_path / "out"
    r = _medseg(
        "export",
        str(sample / "lung_ct" / "lung1_label.nrrd"),
        "--reference",
        str(sample / "lung_ct" / "lung1_image.nrrd"),
        "-f",
        "nifti,seg.nrrd",
        "--format",
        "stl",
        "-f",
        "stats",
        "-o",
        str(out),
        "--labels",
        str(labels),
        "--case-id",
        "lung1",
    )
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "lung1.nii.gz",
            "lung1.labels.json",
            "lung1.seg.nrrd",
            "lung1_nodule.stl",
            "lung1_stats.csv",
            "lung1_stats.json",
        ]
    )
    assert set(r.stdout.split()) == {str(out / n) for n in names}
    ref = read(sample / "lung_ct" / "lung1_label.nrrd")
    nii = read(out / "lung1.nii.gz")
    assert nii.grid.matches(ref.grid, atol=1e-4)
    np.testing.assert_array_equal(nii.numpy(), ref.numpy())
    stats = json.loads((out / "lung1_stats.json").read_text())
    assert stats["labels"][0]["name"] == "nodule" and stats["labels"][0]["volume_ml"] > 0


@pytest.mark.slow
def test_dicom_seg_out_and_back_in(dicom_series, tmp_path):
    folder = dicom_series("ct", shape=(24, 20, 10))
    ref = read(folder)
    lab = np.zeros(ref.spatial_shape, np.uint8)
    lab[5:15, 4:12, 2:8] = 1
    lab[16:20, 14:18, 3:6] = 2
    mask_path = write(Volume(lab[None], ref.affine, kind="label"), tmp_path / "mask.nii.gz")
    r = _medseg("export", str(mask_path), "-r", str(folder), "-f", "dicom-seg", "-o", str(tmp_path / "seg"))
    assert r.returncode == 0, r.stderr
    seg = tmp_path / "seg" / "mask.seg.dcm"
    assert seg.is_file()
    r = _medseg("export", str(seg), "-r", str(folder), "-f", "nifti", "-o", str(tmp_path / "back"))
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(read(tmp_path / "back" / "mask.nii.gz").numpy()[0], lab)


def test_empty_mask_warns_and_exports(sample, tmp_path):
    ref = read(sample / "lung_ct" / "lung1_label.nrrd")
    empty = write(ref.replace(array=np.zeros_like(ref.numpy()), kind="label"), tmp_path / "empty.nii.gz")
    r = _medseg("export", str(empty), "-f", "nifti,stats", "-o", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stderr and "empty" in r.stderr
    assert json.loads((tmp_path / "out" / "empty_stats.json").read_text())["empty"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-f", "nifty"], "unknown format 'nifty' (did you mean 'nifti'?)"),
        (["-f", "dicom-seg", "-r", "{image}"], "needs the source DICOM series"),
        (["-f", "nifti", "-r", "{other}"], "not on the grid"),
        (["-f", "nifti", "--case-id", "../x"], "case id '../x'"),
    ],
)
def test_errors_are_one_line(args, message, sample, tmp_path, capsys):
    """In-process (the subprocess path is covered above and below): exit 1, one 'error:' line, no output."""
    from medseg.cli.main import main

    paths = {
        "{image}": str(sample / "lung_ct" / "lung1_image.nrrd"),
        "{other}": str(sample / "brain_mr" / "brain1_image.nrrd"),
    }
    args = [paths.get(a, a) for a in args]
    rc = main(["export", str(sample / "lung_ct" / "lung1_label.nrrd"), *args, "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1
    assert message in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.strip().splitlines()[-1]]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_error_from_a_subprocess_is_one_line(sample, tmp_path):
    r = _medseg("export", str(sample / "lung_ct" / "lung1_label.nrrd"), "-f", "stl,nifty", "-o", str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error: --format: unknown format 'nifty' (did you mean 'nifti'?); available: ")
    assert "\n" not in r.stderr.strip()
