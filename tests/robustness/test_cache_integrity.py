"""Caches are verified before reuse: a damaged training-cache entry is rebuilt, a hand-edited planner
fingerprint entry is analysed again, each with a warning naming the case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.core import make_affine
from medseg.errors import InputWarning
from medseg.planning.fingerprint import fingerprint_dataset
from medseg.training import CacheStats, load_dataset, prepare_dataset
from tests.planning.conftest import box_case, dataset_json, write_case
from tests.training.conftest import write_nnunet


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nnunet(tmp_path_factory.mktemp("data") / "ds", n_cases=2, shape=(20, 20, 20))


def _flip(path: Path, at: float = 0.6, n: int = 16) -> None:
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    for i in range(start, start + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _damage(folder: Path, how: str) -> None:
    if how == "flipped label":  # a uint8 label: flipped bytes become values >= 251
        _flip(folder / "label.npy")
    elif how == "truncated image":
        path = folder / "image.npy"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbled locations":
        (folder / "locations.npz").write_bytes(b"PK\x03\x04 not a zip any more")
    elif how == "unparseable meta":
        (folder / "meta.json").write_bytes(b'{"case_id": "case00", \xff')
    elif how == "missing label":
        (folder / "label.npy").unlink()


@pytest.mark.parametrize(
    "how", ["flipped label", "truncated image", "garbled locations", "unparseable meta", "missing label"]
)
def test_a_damaged_training_cache_entry_is_rebuilt_with_a_warning(tmp_path: Path, dataset: Path, how: str) -> None:
    cache = tmp_path / "cache"
    first = prepare_dataset(load_dataset(dataset), None, cache)
    good_label = np.array(first[0].label(mmap=False))
    good_image = np.array(first[0].image(mmap=False))
    _damage(first[0].folder, how)
    stats = CacheStats()
    with pytest.warns(InputWarning, match=r"case 'case00': training cache entry .* is damaged .*pre-processed again"):
        again = prepare_dataset(load_dataset(dataset), None, cache, stats=stats)
    assert (stats.hits, stats.misses, stats.ids_processed) == (1, 1, ["case00"])
    assert np.array_equal(again[0].label(mmap=False), good_label) and again[0].label(mmap=False).max() <= 2
    assert np.array_equal(again[0].image(mmap=False), good_image)
    assert set(again[0].locations()) == {1, 2}
    third = CacheStats()
    prepare_dataset(load_dataset(dataset), None, cache, stats=third)  # rebuilt entries verify again
    assert (third.hits, third.misses) == (2, 0)


def test_a_hand_edited_fingerprint_entry_is_analysed_again(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for i in range(3):
        write_case(root, f"case{i}", *box_case(fg_value=100.0 + 10 * i), make_affine((1.0, 1.0, 2.0)))
    dataset_json(root, {"background": 0, "a": 1, "b": 2})
    cache = tmp_path / "fingerprint.json"
    first = fingerprint_dataset(root, cache=cache)
    data = json.loads(cache.read_text())
    data["cases"][1]["spacing"] = [9.0, 9.0, 9.0]  # hand-edited: would move the planned spacing
    cache.write_text(json.dumps(data))
    with pytest.warns(InputWarning, match=r"fingerprint.json: the entry of case 'case1' .*checksum.*analysed again"):
        again = fingerprint_dataset(root, cache=cache)
    assert again.data["cache"]["reused"] == 2 and again.data["cache"]["analysed"] == 1
    assert again.data["cases"][1]["spacing"] == first.data["cases"][1]["spacing"]
    assert again.data["spacing"] == first.data["spacing"]
    clean = fingerprint_dataset(root, cache=cache)  # the rewritten cache verifies
    assert clean.data["cache"]["reused"] == 3
