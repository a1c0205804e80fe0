"""A few-iteration training run on a tiny phantom set: loss falls, checkpoints reload, resume, cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError
from medseg.training import CacheStats, Trainer, TrainingConfig, load_checkpoint, load_dataset, prepare_dataset
from medseg.transforms.augment import Augment

from .conftest import write_nnunet

NET = {"n_stages": 3, "base_channels": 4, "deep_supervision": True}
FAST = {"batch_size": 2, "optimizer": "adamw", "lr": 1e-2, "progress": False, "augment": Augment(p_rotate=0.0)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nnunet(tmp_path_factory.mktemp("data") / "ds", shape=(24, 24, 24), spacing=(2.5, 2.5, 2.5))


@pytest.fixture(scope="module")
def run(dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run")
    trainer = Trainer(
        "unet", NET, out_dir=out, config={"name": "phantom"}, patch_size=(16, 16, 16),
        max_epochs=3, iterations_per_epoch=6, val_every=3, **FAST,
    )  # fmt: skip
    return trainer, trainer.fit(load_dataset(dataset), fold=0, n_folds=2), out


def test_loss_falls_and_logs(run) -> None:
    _, result, out = run
    rows = result.log_csv.read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,lr,time_s,data_wait_s")
    losses = [float(r.split(",")[1]) for r in rows[1:]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert result.curve_png.stat().st_size > 1000
    assert {"val_dice_liver", "val_dice_spleen", "val_dice_mean"} <= set(result.metrics)
    assert (out / "splits.json").exists() and (out / "fold_0" / "metrics.json").exists()


def test_checkpoint_reloads_for_prediction(run, dataset: Path) -> None:
    trainer, result, _ = run
    ckpt = load_checkpoint(result.best_checkpoint, labels={0: "background", 1: "liver", 2: "spleen"}, channels=["CT"])
    assert ckpt.epoch == 3 and ckpt.network_name == "unet"
    assert ckpt.network_options["out_channels"] == 3 and ckpt.network_options["in_channels"] == 1
    assert ckpt.config["name"] == "phantom" and ckpt.config["training"]["patch_size"] == [16, 16, 16]
    net = ckpt.build_network()
    cases = prepare_dataset(load_dataset(dataset), None, result.out_dir.parent / "cache", stats=(stats := CacheStats()))
    assert stats.misses == 0
    image = torch.from_numpy(np.asarray(cases[0].image()))
    from medseg.training.validation import _predict_case

    logits = _predict_case(net, image, patch_size=(16, 16, 16))
    assert logits.shape == (3, 24, 24, 24) and torch.isfinite(logits).all()
    # best (= last, validated once at epoch 3) reloads to exactly the trained network
    assert torch.allclose(logits, _predict_case(trainer.network, image, patch_size=(16, 16, 16)), atol=1e-5)


def test_resume_continues_from_last_epoch_with_cache_hits(run, dataset: Path) -> None:
    _, first, out = run
    before = first.log_csv.read_text().splitlines()
    trainer = Trainer(
        "unet", NET, out_dir=out, patch_size=(16, 16, 16), max_epochs=4, iterations_per_epoch=2, val_every=10, **FAST
    )
    result = trainer.fit(dataset, fold=0, n_folds=2)
    assert (trainer.cache_stats.hits, trainer.cache_stats.misses) == (4, 0)
    after = result.log_csv.read_text().splitlines()
    assert after[: len(before)][1:] == before[1:] and len(after) == 5 and after[-1].startswith("4,")
    assert load_checkpoint(result.last_checkpoint).epoch == 4 and result.epochs == 4


def test_seeded_runs_repeat(dataset: Path, tmp_path: Path) -> None:
    losses = []
    for name in ("a", "b"):
        t = Trainer(
            "unet", NET, out_dir=tmp_path / name, patch_size=(16, 16, 16), max_epochs=1, iterations_per_epoch=2, **FAST
        )
        losses.append(t.fit(dataset).log_csv.read_text().splitlines()[1].split(",")[1])
    assert losses[0] == losses[1]


def test_early_stopping(dataset: Path, tmp_path: Path) -> None:
    opts = {**FAST, "lr": 1e-12, "augment": None}
    t = Trainer("unet", NET, out_dir=tmp_path, patch_size=(16, 16, 16), max_epochs=6, iterations_per_epoch=1,
                val_every=1, early_stopping=1, **opts)  # fmt: skip
    result = t.fit(dataset, fold=1, n_folds=2)
    assert result.stopped_early and result.epochs == 2


def test_time_budget_stops_after_the_epoch_that_reaches_it(dataset: Path, tmp_path: Path) -> None:
    t = Trainer("unet", NET, out_dir=tmp_path, patch_size=(16, 16, 16), max_epochs=6, iterations_per_epoch=1,
                max_time_s=1e-3, **FAST)  # fmt: skip
    result = t.fit(dataset)
    assert result.stopped_early and result.epochs == 1
    assert len(result.log_csv.read_text().splitlines()) == 2
    with pytest.raises(ConfigError, match="max_time_s must be positive"):
        Trainer("unet", NET, out_dir=tmp_path, max_time_s=0)


def test_2d_network_trains_on_slices(dataset: Path, tmp_path: Path) -> None:
    t = Trainer("unet", {"n_stages": 3, "base_channels": 4}, out_dir=tmp_path, patch_size=(16, 16), max_epochs=1,
                iterations_per_epoch=2, **FAST)  # fmt: skip
    result = t.fit(dataset, fold=0, n_folds=2)
    assert result.metrics["val_dice_mean"] >= 0.0
    assert load_checkpoint(result.best_checkpoint).network_options["spatial_dims"] == 2


def test_bad_patch_size_fails_before_any_work(dataset: Path, tmp_path: Path) -> None:
    t = Trainer("unet", {"n_stages": 4}, out_dir=tmp_path / "run", patch_size=(20, 16, 16))
    with pytest.raises(ConfigError, match=r"axis 0 \(X\) = 20 is not divisible by 8 \(nearest valid: 16 or 24\)"):
        t.fit(dataset, fold=0, n_folds=2)
    assert not (tmp_path / "run").exists()


def test_training_config_validation() -> None:
    with pytest.raises(ConfigError, match="did you mean 'max_epochs'"):
        TrainingConfig.from_dict({"max_epoch": 3})
    with pytest.raises(ConfigError, match="did you mean 'dice_ce'"):
        TrainingConfig(loss="dice_c")
    with pytest.raises(ConfigError, match="augment: unknown option 'p_rotat'"):
        TrainingConfig(augment={"p_rotat": 0.1})


def test_classifier_from_csv_class_column(tmp_path: Path) -> None:
    from medseg.data import ct_phantom
    from medseg.io import write

    lines = ["image,class"]
    for i in range(4):
        image, _ = ct_phantom((32, 32, 1), (1.0, 1.0, 1.0), seed=i)
        write(image.replace(array=image.numpy().astype(np.float32) / 500), tmp_path / f"img{i}.nii.gz")
        lines.append(f"img{i}.nii.gz,{i % 2}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    t = Trainer(
        "conv_block_classifier", {"base_channels": 2, "fc_units": 8}, out_dir=tmp_path / "run",
        patch_size=(32, 32), max_epochs=2, iterations_per_epoch=2, val_every=1, **{**FAST, "augment": None},
    )  # fmt: skip
    result = t.fit(tmp_path / "m.csv", fold=0, n_folds=2)
    assert 0.0 <= result.metrics["val_accuracy"] <= 1.0
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt.labels == {0: "class_0", 1: "class_1"} and ckpt.network_options["n_classes"] == 2
    net = ckpt.build_network()
    assert net(torch.zeros(1, 1, 32, 32)).shape == (1, 2)


def test_label_values_outside_the_labels_are_reported(dataset: Path, tmp_path: Path) -> None:
    from medseg.errors import InputError

    t = Trainer("unet", NET, out_dir=tmp_path, labels={0: "background", 1: "liver"}, patch_size=(16, 16, 16))
    with pytest.raises(InputError, match=r"case 'case00': label values \[2\] are not among the labels"):
        t.fit(dataset, fold=0, n_folds=2)
