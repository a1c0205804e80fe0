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
