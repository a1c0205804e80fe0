"""A few-iteration training run on a tiny phantom set: loss falls, checkpoints reload, resume, cache."""

from __future__ import annotations

import itertools
import json
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
    from medseg.training.validation import predict_case

    logits = predict_case(net, image, patch_size=(16, 16, 16))
    assert logits.shape == (3, 24, 24, 24) and torch.isfinite(logits).all()
    # best (= last, validated once at epoch 3) reloads to exactly the trained network
    assert torch.allclose(logits, predict_case(trainer.network, image, patch_size=(16, 16, 16)), atol=1e-5)


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
    assert result.stopped_early and result.epochs == 1 and result.stopped_by == "time limit"
    assert len(result.log_csv.read_text().splitlines()) == 2
    saved = json.loads((result.out_dir / "metrics.json").read_text())
    assert saved["stopped_by"] == "time limit" and saved["iterations"] == 1 and saved["validations"] == 0
    with pytest.raises(ConfigError, match="max_time_s must be positive"):
        Trainer("unet", NET, out_dir=tmp_path, max_time_s=0)


def test_2d_network_trains_on_slices(dataset: Path, tmp_path: Path) -> None:
    from medseg.metrics import dice
    from medseg.training.validation import predict_case

    t = Trainer("unet", {"n_stages": 3, "base_channels": 4}, out_dir=tmp_path, patch_size=(16, 16), max_epochs=1,
                iterations_per_epoch=2, **FAST)  # fmt: skip
    result = t.fit(dataset, fold=0, n_folds=2)
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt.network_options["spatial_dims"] == 2
    # the reported validation Dice is what the saved 2D network gives slice by slice on the validation cases
    net = ckpt.build_network()
    cases = {c.case_id: c for c in prepare_dataset(load_dataset(dataset), None, tmp_path / "cache")}
    val_ids = __import__("json").loads((tmp_path / "splits.json").read_text())[0]["val"]
    per_label: dict[int, list[float]] = {1: [], 2: []}
    for cid in val_ids:
        image = torch.from_numpy(np.asarray(cases[cid].image()))
        logits = torch.stack([predict_case(net, sl, patch_size=(16, 16)) for sl in image.permute(3, 0, 1, 2)], -1)
        pred, ref = logits.argmax(0).numpy(), np.asarray(cases[cid].label())[0]
        for lab in per_label:
            per_label[lab].append(dice(pred, ref, label=lab))
    assert result.metrics["val_dice_liver"] == pytest.approx(np.mean(per_label[1]), abs=1e-6)
    assert result.metrics["val_dice_spleen"] == pytest.approx(np.mean(per_label[2]), abs=1e-6)


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
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt.labels == {0: "class_0", 1: "class_1"} and ckpt.network_options["n_classes"] == 2
    net = ckpt.build_network()
    assert net(torch.zeros(1, 1, 32, 32)).shape == (1, 2)
    # the reported accuracy is what the saved classifier gets on the validation images
    val_ids = __import__("json").loads((tmp_path / "run" / "splits.json").read_text())[0]["val"]
    correct = 0
    for cid in val_ids:
        i = int(cid.removeprefix("img"))
        from medseg.io import read

        x = torch.from_numpy(read(tmp_path / f"img{i}.nii.gz").numpy()[..., 0].astype(np.float32))[None]
        correct += int(net(x).argmax(1).item() == i % 2)
    assert result.metrics["val_accuracy"] == correct / len(val_ids)


def test_label_values_outside_the_labels_are_reported(dataset: Path, tmp_path: Path) -> None:
    from medseg.errors import InputError

    t = Trainer("unet", NET, out_dir=tmp_path, labels={0: "background", 1: "liver"}, patch_size=(16, 16, 16))
    with pytest.raises(InputError, match=r"case 'case00': label values \[2\] are not among the labels"):
        t.fit(dataset, fold=0, n_folds=2)


def test_resume_with_more_epochs_follows_the_new_schedule(dataset: Path, tmp_path: Path) -> None:
    opts = {**FAST, "optimizer": "sgd", "lr": 0.01, "schedule": "poly"}
    Trainer("unet", NET, out_dir=tmp_path, patch_size=(16, 16, 16), max_epochs=2, iterations_per_epoch=1,
            **opts).fit(dataset)  # fmt: skip
    result = Trainer("unet", NET, out_dir=tmp_path, patch_size=(16, 16, 16), max_epochs=4, iterations_per_epoch=1,
                     **opts).fit(dataset)  # fmt: skip
    lrs = [float(r.split(",")[2]) for r in result.log_csv.read_text().splitlines()[1:]]
    # epochs 1-2 ran under the 2-epoch plan, 3-4 continue the 4-epoch poly schedule (never back to 0.01 or 0)
    assert lrs == pytest.approx([0.01, 0.01 * 0.5**0.9, 0.01 * 0.5**0.9, 0.01 * 0.25**0.9], rel=1e-5)


def test_time_budget_runs_the_schedule_over_the_budget(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    import medseg.training.trainer as trainer_module

    clock = itertools.count(0.0, 10.0)  # every reading of the trainer's clock is 10 s later
    monkeypatch.setattr(trainer_module, "time", __import__("types").SimpleNamespace(perf_counter=lambda: next(clock)))
    opts = {**FAST, "optimizer": "sgd", "lr": 0.01, "schedule": "poly"}
    t = Trainer("unet", NET, out_dir=tmp_path, patch_size=(16, 16, 16), max_epochs=1000, iterations_per_epoch=1,
                max_time_s=200, **opts)  # fmt: skip
    result = t.fit(dataset)
    lrs = [float(r.split(",")[2]) for r in result.log_csv.read_text().splitlines()[1:]]
    assert result.stopped_early and result.epochs < 1000
    assert lrs[-1] < 0.01 * 0.2  # annealed by the budget, not by the 1000 planned epochs
    assert all(a > b for a, b in itertools.pairwise(lrs))


def _fake_clock(monkeypatch, step_s: float = 10.0) -> None:
    """Every reading of the trainer's clock is ``step_s`` later than the one before."""
    import medseg.training.trainer as trainer_module

    clock = itertools.count(0.0, step_s)
    monkeypatch.setattr(trainer_module, "time", __import__("types").SimpleNamespace(perf_counter=lambda: next(clock)))


def test_a_time_budget_lengthens_a_short_plan(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    _fake_clock(monkeypatch)
    opts = {**FAST, "optimizer": "sgd", "lr": 0.01, "schedule": "poly"}
    t = Trainer("unet", NET, out_dir=tmp_path, patch_size=(16, 16, 16), max_epochs=2, iterations_per_epoch=1,
                max_time_s=200, **opts)  # fmt: skip
    result = t.fit(dataset)
    assert result.epochs > 2 and result.stopped_by == "time limit" and result.iterations == result.epochs
    saved = json.loads((result.out_dir / "metrics.json").read_text())
    assert saved["training_s"] > 150 and saved["epochs_planned"] is None and saved["max_time_s"] == 200


def test_a_budget_shorter_than_an_epoch_ends_it_early(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    """nnU-Net-sized epochs (250 iterations) and a 2-minute budget: the run stops inside the first epoch."""
    _fake_clock(monkeypatch)
    opts = {**FAST, "optimizer": "sgd", "lr": 0.01, "schedule": "poly"}
    t = Trainer("unet", NET, out_dir=tmp_path, patch_size=(16, 16, 16), max_epochs=1000, iterations_per_epoch=250,
                max_time_s=120, **opts)  # fmt: skip
    result = t.fit(dataset)
    assert result.epochs == 1 and result.stopped_by == "time limit" and 1 <= result.iterations < 250
    assert t.settings.learning_rate * 0.5 > _lr_now(result.out_dir)  # the schedule decayed within the epoch


def _lr_now(run_dir: Path) -> float:
    state = load_checkpoint(run_dir / "last.pt").training_state["optimizer"]
    return float(state["param_groups"][0]["lr"])


def test_a_time_budget_survives_a_restart(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    """Killed half-way and resumed: the run trains the rest of the budget and the schedule goes on decaying."""
    _fake_clock(monkeypatch)
    opts = {**FAST, "optimizer": "sgd", "lr": 0.01, "schedule": "poly"}

    def trainer() -> Trainer:
        return Trainer("unet", NET, out_dir=tmp_path, patch_size=(16, 16, 16), max_epochs=1000,
                       iterations_per_epoch=1, max_time_s=400, **opts)  # fmt: skip

    real_end = Trainer._end_epoch

    def killed_after_3(self, run, epoch, row):
        stop = real_end(self, run, epoch, row)
        if epoch + 1 == 3:
            raise KeyboardInterrupt  # after last.pt of epoch 3 is written
        return stop

    monkeypatch.setattr(Trainer, "_end_epoch", killed_after_3)
    with pytest.raises(KeyboardInterrupt):
        trainer().fit(dataset)
    before = load_checkpoint(tmp_path / "all" / "last.pt").training_state["elapsed_s"]
    monkeypatch.setattr(Trainer, "_end_epoch", real_end)
    result = trainer().fit(dataset)
    lrs = [float(r.split(",")[2]) for r in result.log_csv.read_text().splitlines()[1:]]
    assert len(lrs) == result.epochs > 3 and all(a > b for a, b in itertools.pairwise(lrs))  # no jump back
    saved = json.loads((result.out_dir / "metrics.json").read_text())
    assert 100 < before < 300 < saved["training_s"] <= 400  # the rest of the budget, not a new one
    assert saved["iterations"] == result.epochs


def test_metrics_are_those_of_the_best_checkpoint(dataset: Path, tmp_path: Path) -> None:
    opts = {**FAST, "lr": 1e-12, "augment": None}  # no learning: the first validation stays the best
    t = Trainer("unet", NET, out_dir=tmp_path, patch_size=(16, 16, 16), max_epochs=3, iterations_per_epoch=1,
                val_every=1, **opts)  # fmt: skip
    result = t.fit(dataset, fold=1, n_folds=2)
    best = load_checkpoint(result.best_checkpoint)
    assert result.best_epoch == best.epoch == 1 and result.epochs == 3
    assert result.metrics == best.metrics
    saved = json.loads((result.out_dir / "metrics.json").read_text())
    assert saved["best_epoch"] == 1 and saved["epochs"] == 3 and saved["epochs_planned"] == 3
    assert saved["stopped_by"] == "completed" and saved["iterations"] == 3 and saved["validations"] == 3
    assert saved["val_dice_mean"] == pytest.approx(best.metrics["val_dice_mean"])
    assert "last_val_dice_mean" in saved


def test_last_checkpoint_carries_the_rng_state(dataset: Path, tmp_path: Path) -> None:
    from medseg.training.checkpoint import set_rng_state

    t = Trainer("unet", NET, out_dir=tmp_path, patch_size=(16, 16, 16), max_epochs=1, iterations_per_epoch=1, **FAST)
    result = t.fit(dataset)
    after_training = (torch.rand(3), np.random.rand(3), __import__("random").random())
    set_rng_state(load_checkpoint(result.last_checkpoint).training_state["rng"])
    again = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(after_training[0], again[0]) and np.array_equal(after_training[1], again[1])
    assert after_training[2] == again[2]


def test_deterministic_asks_torch_for_deterministic_kernels(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    calls: list[bool] = []
    real = torch.use_deterministic_algorithms
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda mode, **kw: (calls.append(mode), real(mode))[1])
    t = Trainer("unet", NET, out_dir=tmp_path, patch_size=(16, 16, 16), max_epochs=1, iterations_per_epoch=1,
                deterministic=True, **FAST)  # fmt: skip
    t.fit(dataset)
    assert calls == [True, False] and not torch.are_deterministic_algorithms_enabled()


def test_tensorboard_without_the_package_is_a_config_error(dataset: Path, tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed")
    t = Trainer("unet", NET, out_dir=tmp_path, patch_size=(16, 16, 16), tensorboard=True, **FAST)
    with pytest.raises(ConfigError, match=r"tensorboard.*pip install 'medseg\[tensorboard\]'"):
        t.fit(dataset)


def test_a_plan_far_too_long_for_this_device_is_announced(dataset: Path, tmp_path: Path, caplog) -> None:
    opts = {**FAST, "lr": 1e-12, "augment": None}
    t = Trainer("unet", NET, out_dir=tmp_path, patch_size=(16, 16, 16), max_epochs=100_000_000, iterations_per_epoch=5,
                val_every=1, early_stopping=1, **opts)  # fmt: skip
    with caplog.at_level("INFO", logger="medseg.training.trainer"):
        t.fit(dataset, fold=0, n_folds=2)
    (record,) = [r for r in caplog.records if "s/iteration" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert "100000000 epochs × 5 iterations" in record.getMessage() and "days" in record.getMessage()
    assert "training.max_time_s" in record.getMessage()


def test_without_a_terminal_progress_is_one_line_per_epoch(dataset: Path, tmp_path: Path, capsys) -> None:
    """``medseg train ... > train.log``: no progress-bar frame per iteration, one line per epoch."""
    t = Trainer("unet", NET, out_dir=tmp_path, patch_size=(16, 16, 16), max_epochs=3, iterations_per_epoch=4,
                **{**FAST, "progress": True})  # fmt: skip
    t.fit(dataset)
    err = capsys.readouterr().err
    # log records (when an earlier command set logging up in this process) are not progress lines
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("INFO ", "WARNING "))]
    assert "\r" not in err and "it/s" not in err
    assert [line.split(":")[0] for line in lines] == ["all epoch 1", "all epoch 2", "all epoch 3"]
    assert "loss" in lines[0] and "lr" in lines[0]
