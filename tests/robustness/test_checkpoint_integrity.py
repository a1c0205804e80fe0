"""Checkpoints carry a SHA-256 of their content, checked on load; damaged, truncated or half-written
``last.pt`` files stop training in one line that says what to do."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from medseg.errors import CheckpointError, OutputError
from medseg.networks import build_network
from medseg.training import Trainer, load_checkpoint, save_checkpoint
from medseg.training import checkpoint as checkpoint_module
from tests.robustness.conftest import expect_error
from tests.training.conftest import write_nnunet

TINY = {"in_channels": 1, "out_channels": 2, "n_stages": 2, "base_channels": 4}
NET = {"n_stages": 2, "base_channels": 4}
FAST = {"batch_size": 2, "lr": 1e-2, "progress": False, "augment": None, "patch_size": (16, 16, 16)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nnunet(tmp_path_factory.mktemp("data") / "ds", n_cases=2, shape=(20, 20, 20))


def _flip_weights(path: Path, n: int = 16) -> None:
    """Flip ``n`` bytes inside the stored bytes of the largest tensor (the zip and the pickle stay valid)."""
    state = torch.load(path, weights_only=True)["state_dict"]
    largest = max(state.values(), key=lambda t: t.numel()).numpy().tobytes()
    data = bytearray(path.read_bytes())
    at = data.find(largest) + len(largest) // 2
    assert at > len(largest) // 2, "tensor bytes not found in the file"
    for i in range(at, at + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_the_weights_are_refused(tmp_path: Path) -> None:
    path = save_checkpoint(
        tmp_path / "best.pt", build_network("unet", **TINY), network_name="unet", network_options=TINY
    )
    load_checkpoint(path)
    _flip_weights(path)
    expect_error(lambda: load_checkpoint(path), CheckpointError, "damaged", "SHA-256", "re-train", "best.pt", name=path)


def test_checkpoints_without_a_checksum_still_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = save_checkpoint(
        tmp_path / "old.pt", build_network("unet", **TINY), network_name="unet", network_options=TINY
    )
    data = torch.load(path, weights_only=True)
    del data[checkpoint_module.CHECKSUM_KEY]
    torch.save(data, path)  # as medseg wrote it before checksums
    with caplog.at_level("DEBUG", logger="medseg.training.checkpoint"):
        assert load_checkpoint(path).network_name == "unet"
    assert "cannot be verified" in caplog.text


def test_the_checksum_covers_the_config_too_and_update_config_renews_it(tmp_path: Path) -> None:
    from medseg.training.checkpoint import update_config

    path = save_checkpoint(
        tmp_path / "m.pt", build_network("unet", **TINY), network_name="unet", network_options=TINY,
        config={"postprocess": []},
    )  # fmt: skip
    update_config(path, postprocess=[{"largest_component": {}}])
    assert load_checkpoint(path).config["postprocess"] == [{"largest_component": {}}]
    data = torch.load(path, weights_only=True)
    data["labels"] = {0: "background", 1: "tumour"}  # edited behind medseg's back, checksum kept
    torch.save(data, path)
    expect_error(lambda: load_checkpoint(path), CheckpointError, "damaged", name=path)


def _train(out: Path, dataset: Path, epochs: int, **options: object) -> object:
    trainer = Trainer("unet", NET, out_dir=out, max_epochs=epochs, iterations_per_epoch=1, **{**FAST, **options})
    return trainer.fit(dataset)


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_a_damaged_last_pt_stops_resuming_naming_restart(tmp_path: Path, dataset: Path, damage: str) -> None:
    _train(tmp_path, dataset, 1)
    last = tmp_path / "all" / "last.pt"
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    else:
        _flip_weights(last)
    error = expect_error(lambda: _train(tmp_path, dataset, 2), CheckpointError, "cannot resume", "--restart", name=last)
    assert "\n" not in str(error)
    result = Trainer("unet", NET, out_dir=tmp_path, max_epochs=1, iterations_per_epoch=1, **FAST).fit(
        dataset, resume=False
    )  # --restart starts over
    assert load_checkpoint(result.last_checkpoint).epoch == 1


def test_a_full_disk_while_saving_a_checkpoint_says_so_and_keeps_the_old_one(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _train(tmp_path, dataset, 1)
    last = tmp_path / "all" / "last.pt"
    before = last.read_bytes()

    def full(path: Path, data: bytes) -> None:
        path.write_bytes(bytes(data[:100]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "_write", full)
    expect_error(
        lambda: _train(tmp_path, dataset, 2), OutputError, "no space left on", "while writing", "free space and resume",
        name=last,
    )  # fmt: skip
    assert last.read_bytes() == before
    assert not [p for p in (tmp_path / "all").iterdir() if p.name.endswith(".tmp.pt")]
    monkeypatch.undo()
    assert load_checkpoint(_train(tmp_path, dataset, 2).last_checkpoint).epoch == 2  # type: ignore[attr-defined]
