from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medseg.errors import CheckpointError
from medseg.networks import build_network
from medseg.training import load_checkpoint, save_checkpoint
from medseg.training.splits import load_or_create_splits, make_splits, summarize_folds


def _save(path: Path) -> torch.nn.Module:
    opts = {"in_channels": 2, "out_channels": 3, "n_stages": 2, "base_channels": 4, "strides": [1, (2, 2, 1)]}
    net = build_network("unet", **opts)
    save_checkpoint(
        path,
        net,
        network_name="unet",
        network_options=opts,
        config={"preprocess": [{"resample": {"spacing": (1.0, 1.0, 2.0)}}]},
        labels={0: "background", 1: "liver", 2: "spleen"},
        channels=["T1", "T2"],
        epoch=7,
        metrics={"val_dice_mean": 0.5},
    )
    return net


def test_roundtrip_weights_only(tmp_path: Path) -> None:
    net = _save(tmp_path / "m.pt")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["format"] == "medseg-checkpoint"
    ckpt = load_checkpoint(tmp_path / "m.pt", labels={0: "background", 1: "liver", 2: "spleen"}, channels=["T1", "T2"])
    assert ckpt.epoch == 7 and ckpt.labels[1] == "liver" and ckpt.channels == ["T1", "T2"]
    assert ckpt.config["preprocess"][0]["resample"]["spacing"] == [1.0, 1.0, 2.0]
    assert {"medseg", "torch", "monai"} <= set(ckpt.versions)
    rebuilt = ckpt.build_network()
    assert not rebuilt.training
    x = torch.randn(1, 2, 8, 8, 4)
    net.eval()
    assert torch.equal(rebuilt(x), net(x))
    assert not list(tmp_path.glob(".*tmp*"))


def test_errors_name_file_and_difference(tmp_path: Path) -> None:
    _save(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"m.pt: saved for labels .*2: saved 'spleen' vs expected 'kidney'"):
        load_checkpoint(tmp_path / "m.pt", labels={0: "background", 1: "liver", 2: "kidney"})
    with pytest.raises(CheckpointError, match=r"saved for input channels \['T1', 'T2'\], but \['CT'\]"):
        load_checkpoint(tmp_path / "m.pt", channels=["CT"])
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a medseg checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable medseg checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "none.pt")


def test_splits_cover_all_cases_and_are_reused(tmp_path: Path) -> None:
    ids = [f"c{i}" for i in range(11)]
    splits = make_splits(ids, 5, seed=1)
    vals = [c for s in splits for c in s["val"]]
    assert sorted(vals) == sorted(ids) and len(set(vals)) == 11
    for s in splits:
        assert not set(s["train"]) & set(s["val"]) and len(s["train"]) + len(s["val"]) == 11
    saved = load_or_create_splits(tmp_path / "splits.json", ids, 5, seed=1)
    assert load_or_create_splits(tmp_path / "splits.json", ids, 5, seed=999) == saved
    from medseg.errors import ConfigError

    with pytest.raises(ConfigError, match="delete .*splits.json"):
        load_or_create_splits(tmp_path / "splits.json", ids[:-1], 5)
    for k, d in enumerate([0.6, 0.8]):
        (tmp_path / f"fold_{k}").mkdir()
        (tmp_path / f"fold_{k}" / "metrics.json").write_text(f'{{"val_dice_mean": {d}}}')
    summary = summarize_folds(tmp_path)
    assert summary["mean"]["val_dice_mean"] == pytest.approx(0.7)
    assert (tmp_path / "summary.json").exists()
