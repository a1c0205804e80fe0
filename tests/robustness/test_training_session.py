"""One training run per fold folder, clean stops on SIGINT/SIGTERM, nothing lost or left by a killed run,
and first-time predictions from one package zip that do not race in the unpack cache."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from medseg.errors import OutputError
from medseg.io.lock import folder_lock
from medseg.networks import build_network
from medseg.training import Trainer, load_checkpoint, save_checkpoint
from medseg.training import trainer as trainer_module
from tests.robustness.conftest import expect_error
from tests.training.conftest import write_nnunet

NET = {"n_stages": 2, "base_channels": 4}
FAST = {"batch_size": 2, "lr": 1e-2, "progress": False, "augment": None, "patch_size": (16, 16, 16)}
PIPELINE = """
name: tiny
input: {modality: CT, channels: [CT], labels: {1: liver, 2: spleen}}
network: {name: unet, options: {n_stages: 2, base_channels: 4}}
training: {patch_size: [16, 16, 16], batch_size: 2, max_epochs: 1000, iterations_per_epoch: 2, device: cpu,
           progress: false, num_workers: WORKERS}
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nnunet(tmp_path_factory.mktemp("data") / "ds", n_cases=2, shape=(20, 20, 20))


def _trainer(out: Path, epochs: int) -> Trainer:
    return Trainer("unet", NET, out_dir=out, max_epochs=epochs, iterations_per_epoch=1, **FAST)


def _epochs(log_csv: Path) -> list[int]:
    with log_csv.open(newline="") as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh)]


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


# ---- one run per fold folder --------------------------------------------------------------------
def test_a_second_run_of_the_same_fold_stops_naming_the_first_and_other_folds_train(
    tmp_path: Path, dataset: Path
) -> None:
    with folder_lock(tmp_path / "fold_0"):  # a run of fold 0 under way
        expect_error(
            lambda: _trainer(tmp_path, 1).fit(dataset, fold=0, n_folds=2), OutputError, "in use by",
            f"pid {os.getpid()}", name="fold_0",
        )  # fmt: skip
        assert not (tmp_path / "fold_0" / "last.pt").exists()
        result = _trainer(tmp_path, 1).fit(dataset, fold=1, n_folds=2)  # another fold into the same -o
    assert load_checkpoint(result.last_checkpoint).epoch == 1
    assert not (tmp_path / "fold_1" / ".medseg.lock").exists()


def test_temp_files_of_a_killed_run_are_removed_by_the_next_run(tmp_path: Path, dataset: Path) -> None:
    _trainer(tmp_path, 1).fit(dataset)
    left = [tmp_path / "all" / ".last.pt.0123abcd.tmp.pt", tmp_path / "all" / ".log.csv.89abcdef.tmp.csv"]
    for p in left:
        p.write_bytes(b"half-written by a run killed with -9")
    _trainer(tmp_path, 2).fit(dataset)
    assert not _temps(tmp_path / "all")


def test_a_kill_between_last_pt_and_the_log_row_loses_no_row(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = trainer_module.save_checkpoint

    def killed_after_last_pt_of_epoch_2(path, network, **kwargs):  # type: ignore[no-untyped-def]
        real_save(path, network, **kwargs)
        if Path(path).name == "last.pt" and kwargs["epoch"] == 2:
            raise KeyboardInterrupt  # as kill -9 right after the rename

    monkeypatch.setattr(trainer_module, "save_checkpoint", killed_after_last_pt_of_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path, 3).fit(dataset)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "all" / "last.pt").epoch == 2
    result = _trainer(tmp_path, 3).fit(dataset)
    assert _epochs(result.log_csv) == [1, 2, 3]


# ---- clean stops ----------------------------------------------------------------------------------
def _train_cmd(tmp_path: Path, dataset: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "medseg.cli", "train", str(tmp_path / "p.yaml"), "--data", str(dataset),
            "-o", str(tmp_path / "runs"), *extra]  # fmt: skip


@pytest.mark.parametrize(("name", "workers", "code"), [("SIGTERM", 0, 143), ("SIGINT", 2, 130)])
def test_a_signal_stops_training_cleanly_and_the_same_command_continues(
    tmp_path: Path, dataset: Path, name: str, workers: int, code: int
) -> None:
    (tmp_path / "p.yaml").write_text(PIPELINE.replace("WORKERS", str(workers)))
    log_csv = tmp_path / "runs" / "all" / "log.csv"
    # a new session: Ctrl-C signals the whole process group (loader workers included), SIGTERM the trainer
    proc = subprocess.Popen(
        _train_cmd(tmp_path, dataset), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        while not (log_csv.exists() and len(_epochs(log_csv)) >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        if name == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and lines[-1].startswith(f"interrupted ({name}) after epoch "), err
    done = int(lines[-1].split("after epoch ")[1].split()[0])
    assert f"after epoch {done} of 1000" in lines[-1] and "re-run the same command to continue" in lines[-1]
    assert load_checkpoint(tmp_path / "runs" / "all" / "last.pt").epoch == done
    assert _epochs(log_csv) == list(range(1, done + 1))  # the log holds what was done, no more
    assert not _temps(tmp_path / "runs") and not (tmp_path / "runs" / "all" / ".medseg.lock").exists()
    again = subprocess.run(
        _train_cmd(tmp_path, dataset, "--epochs", str(done + 1)), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert _epochs(log_csv) == list(range(1, done + 2))


# ---- the unpack cache of package zips -----------------------------------------------------------
def _package(path: Path) -> Path:
    """A minimal valid package zip: manifest, pipeline and one fold's weights."""
    opts = {"in_channels": 1, "out_channels": 2, "n_stages": 2, "base_channels": 4}
    weights = save_checkpoint(path.parent / "w.pt", build_network("unet", **opts), network_name="unet",
                              network_options=opts).read_bytes()  # fmt: skip
    files = {"pipeline.yaml": b"name: tiny\n", "weights/fold_0.pt": weights}
    manifest = {
        "format": "medseg-model", "format_version": 1, "name": "tiny",
        "files": {n: {"sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()},
    }  # fmt: skip
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("medseg-model.json", json.dumps(manifest))
        for n, d in files.items():
            z.writestr(n, d)
    return path


# Both processes unpack, then wait for each other before renaming into place: the race happens every time.
RACER = """
import os, sys, time
from pathlib import Path
from medseg.models.store import unpacked

real_replace = os.replace
def replace(src, dst):
    if Path(src).is_dir():  # the unpacked folder, renamed into place
        ready = Path(sys.argv[2])
        (ready / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(list(ready.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    real_replace(src, dst)
os.replace = replace
print(unpacked(sys.argv[1]))
"""


def test_two_first_predictions_from_one_zip_do_not_race(tmp_path: Path) -> None:
    zip_path = _package(tmp_path / "model.zip")
    for trial in range(3):
        home, ready = tmp_path / f"home{trial}", tmp_path / f"ready{trial}"
        ready.mkdir()
        env = {**os.environ, "MEDSEG_HOME": str(home)}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", RACER, str(zip_path), str(ready)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        results = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
        folders = {out.strip() for out, _ in results}
        assert len(folders) == 1 and (Path(folders.pop()) / "weights" / "fold_0.pt").is_file()
        assert len(list(ready.iterdir())) == 2  # both really reached the rename
        assert not [p for p in (home / "cache").iterdir() if p.name.startswith(".")]  # no unpacking left behind


# ---- resume is exact ----------------------------------------------------------------------------
def test_a_run_stopped_and_resumed_ends_with_the_weights_of_an_uninterrupted_one(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fit(out: Path) -> Path:
        trainer = Trainer("unet", NET, out_dir=out, max_epochs=4, iterations_per_epoch=2, deterministic=True, **FAST)
        return trainer.fit(dataset).last_checkpoint

    real_end = Trainer._end_epoch

    def stopped_after_2(self, run, epoch, row):  # type: ignore[no-untyped-def]
        stop = real_end(self, run, epoch, row)
        if epoch + 1 == 2:
            run.stop.set("SIGTERM")  # as a SIGTERM arriving while epoch 2 is saved
        return stop

    straight = load_checkpoint(fit(tmp_path / "straight")).state_dict
    monkeypatch.setattr(Trainer, "_end_epoch", stopped_after_2)
    stopped = Trainer("unet", NET, out_dir=tmp_path / "resumed", max_epochs=4, iterations_per_epoch=2,
                      deterministic=True, **FAST).fit(dataset)  # fmt: skip
    assert stopped.stopped_by == "SIGTERM" and stopped.epochs == 2
    monkeypatch.undo()
    resumed = load_checkpoint(fit(tmp_path / "resumed")).state_dict
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_the_patch_stream_does_not_depend_on_the_workers_or_where_it_starts(dataset: Path, tmp_path: Path) -> None:
    from itertools import islice

    from medseg.training import load_dataset, prepare_dataset
    from medseg.training.loader import PatchStream, make_loader

    cases = prepare_dataset(load_dataset(dataset), None, tmp_path / "cache")

    def batches(workers: int, start_epoch: int, n: int) -> list[torch.Tensor]:
        stream = PatchStream(cases, (8, 8, 8), 2, seed=3, start_epoch=start_epoch, iterations_per_epoch=3)
        return [x for x, _ in islice(iter(make_loader(stream, workers, False)), n)]

    whole = batches(0, 0, 9)
    assert all(torch.equal(a, b) for a, b in zip(whole, batches(2, 0, 9)))
    assert all(torch.equal(a, b) for a, b in zip(whole[6:], batches(2, 2, 3)))
