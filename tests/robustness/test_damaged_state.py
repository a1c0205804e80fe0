"""Damaged files on disk are refused in one clear line (or, for caches, rebuilt with a warning).

A truncated image says it is truncated and by how much; a damaged planner cache is analysed again;
a package zip whose data fails its CRC names the zip and says to get it again.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import medseg
from medseg.core import make_affine
from medseg.errors import InputError, InputWarning
from medseg.models.package import MANIFEST, extract_package
from medseg.planning.fingerprint import fingerprint_dataset, load_fingerprint
from tests.planning.conftest import box_case, dataset_json, write_case
from tests.robustness.conftest import expect_error


def _cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize(("suffix", "compress"), [(".mha", False), (".mha", True), (".nrrd", False)])
def test_truncated_itk_file_says_truncated_with_both_sizes(tmp_path: Path, suffix: str, compress: bool) -> None:
    array = (np.arange(40 * 30 * 20) % 251).astype(np.int16).reshape(20, 30, 40)
    path = tmp_path / f"image{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path), compress)
    _cut(path, 0.5)
    error = expect_error(lambda: medseg.read(path), InputError, "truncated", "declares", "the file has", name=path)
    message = str(error)
    assert "No such file or directory" not in message
    declared = 48000 if not compress else None  # raw: 40×30×20 int16; compressed: the size its header states
    if declared is not None:
        assert f"{declared} bytes" in message


def test_damaged_gzip_nrrd_is_one_clear_line(tmp_path: Path) -> None:
    array = (np.arange(40 * 30 * 20) % 251).astype(np.int16).reshape(20, 30, 40)
    path = tmp_path / "image.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path), True)
    _cut(path, 0.6)
    expect_error(lambda: medseg.read(path), InputError, "damaged or truncated", "re-copy", name=path)


def test_fingerprint_cache_with_invalid_utf8_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for i in range(2):
        image, label = box_case(seed=i)
        write_case(root, f"c{i}", image, label, make_affine((1.0, 1.0, 3.0)))
    dataset_json(root, {"background": 0, "organ": 1, "cyst": 2})
    cache = tmp_path / "out" / "fingerprint.json"
    first = fingerprint_dataset(root, cache=cache)
    cache.write_bytes(b'{"version": \xff\xfe "cases": [\x80]}')  # invalid UTF-8, as a disk error leaves it
    with pytest.warns(InputWarning, match=r"fingerprint.json: unreadable fingerprint cache \(UnicodeDecodeError"):
        again = fingerprint_dataset(root, cache=cache)
    assert (again.data["cache"]["reused"], again.data["cache"]["analysed"]) == (0, 2)
    assert [c["key"] for c in again.data["cases"]] == [c["key"] for c in first.data["cases"]]
    assert again.intensity(0) == first.intensity(0)
    assert load_fingerprint(cache).data["cases"] == again.data["cases"]  # rewritten, readable again
    cache.write_bytes(b"\xff\xfe")
    expect_error(lambda: load_fingerprint(cache), InputError, "medseg plan", name=cache)


def _damaged_package(path: Path) -> Path:
    """A package zip whose member data was changed after zipping (its CRC-32 no longer matches)."""
    data = b"weights " * 5000
    manifest = {
        "format": "medseg-model",
        "format_version": 1,
        "name": "crc",
        "files": {"notes.txt": {"sha256": hashlib.sha256(data).hexdigest()}},
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(MANIFEST, json.dumps(manifest))
        z.writestr("notes.txt", data)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"weights weights")
    raw[at + 100] ^= 0x01  # one bit flipped in the stored member
    path.write_bytes(bytes(raw))
    return path


def test_package_with_bad_crc_is_refused_in_one_line(tmp_path: Path) -> None:
    package = _damaged_package(tmp_path / "model.zip")
    dest = tmp_path / "out"
    expect_error(
        lambda: extract_package(package, dest), InputError, "damaged", "Bad CRC-32", "download the package again",
        "medseg model export", name=package,
    )  # fmt: skip
    assert not dest.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_cli_install_of_a_package_with_bad_crc(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    package = _damaged_package(tmp_path / "model.zip")
    res = subprocess.run(
        [sys.executable, "-m", "medseg.cli", "model", "install", str(package)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "MEDSEG_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {package}: the zip is damaged"), res.stderr
