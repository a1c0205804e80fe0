"""Bounded inputs: sizes a header, a YAML file or a zip declares are checked before anything is allocated.

Each limit lives in :mod:`medseg.core.limits`, is settable with its ``MEDSEG_MAX_*`` variable and is
named in the message that refuses an input (see docs/reliability.md, "Limits").
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given
from hypothesis import strategies as st

import medseg
from medseg.core import limits
from medseg.core.limits import env_limit, format_bytes
from medseg.errors import ConfigError, InputError
from medseg.models import package as model_package
from medseg.models.package import MANIFEST, extract_package
from medseg.pipeline import Pipeline
from tests.robustness.conftest import assert_empty, expect_error


def _medseg(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medseg.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.fixture
def no_itk_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """SimpleITK must not be asked to decode (and allocate) the image: the header check comes first."""

    def refuse(self: sitk.ImageFileReader) -> sitk.Image:
        raise AssertionError("SimpleITK decoded an image whose header should have been refused")

    monkeypatch.setattr(sitk.ImageFileReader, "Execute", refuse)


# ---- images ----------------------------------------------------------------------------------------


def metaimage_bomb(path: Path, size: int = 600, element: str = "MET_DOUBLE") -> Path:
    """A compressed MHA of a few hundred bytes whose header declares ``size``³ voxels."""
    data = zlib.compress(b"\0" * 4096)
    header = (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        f"CompressedData = True\nCompressedDataSize = {len(data)}\nDimSize = {size} {size} {size}\n"
        f"ElementType = {element}\nElementDataFile = LOCAL\n"
    )
    path.write_bytes(header.encode() + data)
    return path


def test_compressed_mha_declaring_600_cubed_is_refused_before_decoding(tmp_path: Path, no_itk_decoding) -> None:
    path = metaimage_bomb(tmp_path / "bomb.mha")
    assert path.stat().st_size < 400
    expect_error(
        lambda: medseg.read(path), InputError, "(600, 600, 600)", "1.61 GiB", "cannot hold", "1032:1",
        "MEDSEG_MAX_COMPRESSION_RATIO", name=path,
    )  # fmt: skip


def test_gzip_nrrd_declaring_1000_cubed_is_refused_before_decoding(tmp_path: Path, no_itk_decoding) -> None:
    path = tmp_path / "bomb.nrrd"
    header = "NRRD0004\ntype: double\ndimension: 3\nsizes: 1000 1000 1000\nencoding: gzip\nendian: little\n\n"
    path.write_bytes(header.encode() + gzip.compress(b"\0" * 1000))
    assert path.stat().st_size < 200
    expect_error(lambda: medseg.read(path), InputError, "(1000, 1000, 1000)", "7.45 GiB", "cannot hold", name=path)


def test_raw_nrrd_declaring_more_than_the_file_holds_is_truncated(tmp_path: Path, no_itk_decoding) -> None:
    path = tmp_path / "short.nrrd"
    header = "NRRD0004\ntype: short\ndimension: 3\nsizes: 1000 1000 1000\nencoding: raw\nendian: little\n\n"
    path.write_bytes(header.encode() + b"\0" * 100)
    expect_error(lambda: medseg.read(path), InputError, "truncated", "2000000000 bytes", "the file has 100", name=path)


def test_detached_header_whose_data_file_is_missing(tmp_path: Path, no_itk_decoding) -> None:
    path = tmp_path / "image.mhd"
    path.write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nDimSize = 64 64 64\nElementType = MET_SHORT\n"
        "ElementDataFile = image.raw\n"
    )
    expect_error(lambda: medseg.read(path), InputError, "image.raw", "truncated", "the file has 0", name=path)


@pytest.mark.parametrize(("suffix", "compress"), [(".mha", False), (".mha", True), (".nrrd", False), (".nrrd", True)])
def test_genuine_itk_files_still_read(tmp_path: Path, suffix: str, compress: bool) -> None:
    """A constant image compresses as far as deflate goes, yet stays under the bound."""
    for name, array in (("noise", np.arange(40 * 30 * 20, dtype=np.int16)), ("zeros", np.zeros(64**3, np.uint8))):
        shape = (20, 30, 40) if name == "noise" else (64, 64, 64)
        path = tmp_path / f"{name}{suffix}"
        sitk.WriteImage(sitk.GetImageFromArray(array.reshape(shape)), str(path), compress)
        volume = medseg.read(path)
        assert volume.spatial_shape == shape[::-1]
        np.testing.assert_array_equal(volume.numpy()[0].transpose(2, 1, 0).ravel(), array)


def test_compression_ratio_is_settable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = metaimage_bomb(tmp_path / "small_bomb.mha", size=128, element="MET_UCHAR")  # 2 MiB from ~40 bytes
    monkeypatch.setattr(limits, "MAX_COMPRESSION_RATIO", 10.0)
    expect_error(lambda: medseg.read(path), InputError, "more than 10:1", name=path)
    monkeypatch.setattr(limits, "MAX_COMPRESSION_RATIO", 1e6)
    assert medseg.read(path).spatial_shape == (128, 128, 128)  # SimpleITK pads short zlib data with zeros


# ---- the limits themselves ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 bytes"), (155, "155 bytes"), (1536, "1.5 KiB"), (100_000_000, "95.4 MiB"), (16 * 1024**3, "16 GiB")],
)
def test_format_bytes_never_rounds_to_zero(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSEG_MAX_TEST_LIMIT", "2.5e3")
    assert env_limit("MEDSEG_MAX_TEST_LIMIT", 7) == 2500
    monkeypatch.setenv("MEDSEG_MAX_TEST_LIMIT", "lots")
    expect_error(lambda: env_limit("MEDSEG_MAX_TEST_LIMIT", 7), ConfigError, "MEDSEG_MAX_TEST_LIMIT='lots'", "positive")
    monkeypatch.delenv("MEDSEG_MAX_TEST_LIMIT")
    assert env_limit("MEDSEG_MAX_TEST_LIMIT", 7) == 7


def test_package_limit_from_the_environment_is_shown_in_readable_units(tmp_path: Path) -> None:
    package = _package(tmp_path / "model.zip", {"notes.txt": os.urandom(300_000).hex().encode()})  # 600 kB, stored
    res = _medseg("model", "install", str(package), MEDSEG_MAX_PACKAGE_BYTES="100000", MEDSEG_HOME=str(tmp_path))
    assert res.returncode == 1
    line = res.stderr.strip()
    assert "\n" not in line and "unpacks to 586 KiB, more than the 97.7 KiB allowed" in line, line
    assert "MEDSEG_MAX_PACKAGE_BYTES" in line
    res = _medseg("model", "install", str(package), MEDSEG_MAX_PACKAGE_BYTES="many", MEDSEG_HOME=str(tmp_path))
    assert res.returncode == 1 and res.stderr.startswith("error: MEDSEG_MAX_PACKAGE_BYTES='many': not a positive"), (
        res.stderr
    )


# ---- YAML --------------------------------------------------------------------------------------------

LAUGHS = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")),
    ]
)


def test_billion_laughs_pipeline_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    assert len(LAUGHS) < 800
    expect_error(
        lambda: Pipeline.from_yaml(path), ConfigError, "72 aliases", "490329064 nodes", "MEDSEG_MAX_YAML_NODES",
        name=path,
    )  # fmt: skip
    res = _medseg("validate", str(path))
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "MEDSEG_MAX_YAML_ALIASES" in res.stderr


def test_many_aliases_and_recursive_aliases_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "aliases.yaml"
    path.write_text("x: &x 1\nitems: [" + ", ".join(["*x"] * 101) + "]\n")
    expect_error(lambda: Pipeline.from_yaml(path), ConfigError, "101 aliases", name=path)
    monkeypatch.setattr(limits, "MAX_YAML_ALIASES", 200)
    with pytest.raises(ConfigError, match="unknown key 'x'"):  # within the raised bound: on to validation
        Pipeline.from_yaml(path)
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("a: &a [1, *a]\n")
    expect_error(lambda: Pipeline.from_yaml(recursive), ConfigError, "recursive alias", name=recursive)


def test_labels_file_is_bounded_too(tmp_path: Path) -> None:
    from medseg.cli.dataset import load_label_names as read_labels

    path = tmp_path / "labels.yaml"
    path.write_text(LAUGHS)
    expect_error(lambda: read_labels(path), ConfigError, "aliases", name=path)


def test_pipeline_with_a_few_anchors_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "name: anchors\ninput: {modality: CT, channels: [CT], labels: {1: liver}}\n"
        "preprocess:\n  - resample: {spacing: &sp [1.5, 1.5, 1.5]}\n"
        "network: {name: unet}\ntraining: {patch_size: &patch [32, 32, 32]}\ninference: {patch_size: *patch}\n"
    )
    pipeline = Pipeline.from_yaml(path)
    assert list(pipeline.spec.inference.patch_size) == [32, 32, 32]


# ---- model packages ------------------------------------------------------------------------------


def _package(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    """A package zip whose manifest lists ``members`` with their hashes (enough for the size checks)."""
    files = {name: {"sha256": hashlib.sha256(data).hexdigest()} for name, data in members.items()}
    manifest = {"format": "medseg-model", "format_version": 1, "name": "limits", "files": files}
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr(MANIFEST, json.dumps(manifest))
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_package_member_compressed_far_beyond_weights_is_refused_before_unpacking(tmp_path: Path) -> None:
    package = _package(tmp_path / "bomb.zip", {"weights/notes.txt": b"\0" * (64 * 1024**2)}, zipfile.ZIP_DEFLATED)
    assert package.stat().st_size < 200_000
    dest = tmp_path / "out"
    expect_error(
        lambda: extract_package(package, dest), InputError, "'weights/notes.txt' unpacks to 64 MiB", "100:1",
        "MEDSEG_MAX_PACKAGE_RATIO", name=package,
    )  # fmt: skip
    assert_empty(dest)
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_package_size_limit_message_uses_readable_units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = _package(tmp_path / "model.zip", {"notes.txt": b"x" * 3000})
    monkeypatch.setattr(model_package, "MAX_PACKAGE_BYTES", 1000)
    expect_error(
        lambda: extract_package(package, tmp_path / "out"), InputError, "2.93 KiB", "the 1000 bytes allowed",
        name=package,
    )  # fmt: skip


# ---- the header reader itself: never raises, whatever the bytes ----------------------------------------------


@pytest.fixture(scope="module")
def itk_seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], bytes]:
    """Small MHA and NRRD files, raw and compressed: ``{(suffix, compressed): bytes}``."""
    folder = tmp_path_factory.mktemp("itk_seeds")
    array = (np.arange(8 * 6 * 4) % 7).astype(np.int16).reshape(4, 6, 8)
    seeds = {}
    for suffix in (".mha", ".nrrd"):
        for compress in (False, True):
            path = folder / f"seed{suffix}"
            sitk.WriteImage(sitk.GetImageFromArray(array), str(path), compress)
            seeds[suffix, compress] = path.read_bytes()
    return seeds


@given(data=st.data())
def test_header_reader_never_raises_on_mutated_headers(itk_seeds, tmp_path_factory, data) -> None:
    """Byte changes in the header and truncations: the data is located, or None (left to SimpleITK)."""
    from medseg.io.itk_header import stored_data

    suffix, compress = data.draw(st.sampled_from(sorted(itk_seeds)))
    raw = bytearray(itk_seeds[suffix, compress])
    header_end = raw.find(b"\n\n") if suffix == ".nrrd" else raw.find(b"ElementDataFile") + 25
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, header_end))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    path = tmp_path_factory.mktemp("mutated") / f"image{suffix}"
    path.write_bytes(bytes(raw[:cut]))
    found = stored_data(path)
    assert found is None or (found.stored >= 0 and found.encoding in ("raw", "compressed", "text", "hex"))
