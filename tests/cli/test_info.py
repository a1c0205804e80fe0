from __future__ import annotations

import json
import subprocess
import sys


def _medseg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medseg.cli", *args], capture_output=True, text=True, timeout=120)


def test_info_json_on_nifti(sample):
    r = _medseg("info", str(sample / "colin27" / "ch2bet.nii.gz"), "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)[0]
    assert rec["shape"] == [181, 217, 181] and rec["orientation"] == "RAS" and rec["dtype"] == "uint8"


def test_info_on_dicom_folder(sample):
    r = _medseg("info", str(sample / "mr_dicom"))
    assert r.returncode == 0, r.stderr
    assert "MR" in r.stdout and "[256, 256, 20]" in r.stdout and "LPS" in r.stdout


def test_info_missing_path_is_one_line_error(tmp_path):
    r = _medseg("info", str(tmp_path / "nope.nii.gz"))
    assert r.returncode == 1
    assert "nope.nii.gz: no such file" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_info_corrupt_file(tmp_path):
    p = tmp_path / "bad.nii.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00garbage")
    r = _medseg("info", str(p))
    assert r.returncode == 1 and "bad.nii.gz" in r.stderr and "Traceback" not in r.stderr


def test_info_dicom_shows_ras_origin_and_axes_and_plain_dtype(sample):
    r = _medseg("info", str(sample / "mr_dicom"), "--json")
    assert r.returncode == 0, r.stderr
    (rec,) = json.loads(r.stdout)
    assert rec["dtype"] == "int16"
    assert rec["origin_ras_mm"] == [110.5, 78.306, -72.757]
    assert len(rec["direction_ras"]) == 3 and rec["direction_ras"][0] == [-1.0, 0.0, 0.0]
    text = _medseg("info", str(sample / "mr_dicom")).stdout
    assert "origin (RAS mm)" in text and "axes (RAS)" in text


def test_info_big_endian_nifti_dtype_is_named_plainly(tmp_path):
    import nibabel as nib
    import numpy as np

    img = nib.Nifti1Image(np.arange(24, dtype=">i2").reshape(2, 3, 4), np.eye(4))
    nib.save(img, tmp_path / "be.nii")
    rec = json.loads(_medseg("info", str(tmp_path / "be.nii"), "--json").stdout)[0]
    assert rec["dtype"] == "int16"


def test_info_prints_each_warning_once_and_no_library_log_lines(dicom_series, tmp_path):
    import nibabel as nib
    import numpy as np
    import pydicom

    folder = dicom_series(shape=(8, 8, 5))
    for f in folder.iterdir():  # offset each slice in-plane by 0.5 mm per slice: gantry tilt
        ds = pydicom.dcmread(f)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.5 * (int(ds.InstanceNumber) - 1), z]
        ds.save_as(f)
    r = _medseg("info", str(folder))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("gantry tilt") == 1, r.stderr
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
    img.header["pixdim"][0] = 0  # nibabel logs 'pixdim[0] (qfac) should be 1 (default) or -1'
    nib.save(img, tmp_path / "qfac.nii")
    r = _medseg("info", str(tmp_path / "qfac.nii"))
    assert r.returncode == 0, r.stderr
    assert "pixdim" not in r.stderr and "qfac" not in r.stderr, r.stderr


def test_info_exits_nonzero_when_nothing_could_be_read(tmp_path, dicom_series):
    folder = dicom_series(shape=(8, 8, 4))
    (folder / "slice_0001.dcm").unlink()  # uneven spacing: the only series cannot be read
    r = _medseg("info", str(folder))
    assert r.returncode == 1
    assert "nothing could be read" in r.stderr and "--spacing-tolerance" in r.stderr
    ok = _medseg("info", str(folder), "--spacing-tolerance", "1.5")
    assert ok.returncode == 0, ok.stderr
