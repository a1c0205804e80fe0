from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from medseg.training.logs import EpochLog


def test_csv_png_and_reread(tmp_path: Path) -> None:
    log = EpochLog(tmp_path)
    log.append({"epoch": 1, "train_loss": 1.5, "lr": 0.01, "time_s": 2.0})
    log.append({"epoch": 2, "train_loss": 1.1, "lr": 0.009, "time_s": 2.0, "val_dice_mean": 0.4, "val_dice_liver": 0.4})
    rows = EpochLog.read(tmp_path / "log.csv")
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["val_dice_liver"] == pytest.approx(0.4)
    assert math.isnan(rows[0]["val_dice_mean"])
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    log.close()


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard not installed")
def test_tensorboard_events(tmp_path: Path) -> None:
    log = EpochLog(tmp_path, tensorboard=True)
    log.append({"epoch": 1, "train_loss": 1.0, "lr": 0.01})
    log.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_curve_has_a_validation_axis_only_with_validation(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    log = EpochLog(tmp_path)
    log.append({"epoch": 1, "train_loss": 1.0, "lr": 0.01})
    fig = log.figure()
    assert len(fig.axes) == 1
    plt.close(fig)
    log.append({"epoch": 2, "train_loss": 0.5, "lr": 0.01, "val_dice_mean": 0.7})
    fig = log.figure()
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "validation"
    plt.close(fig)
