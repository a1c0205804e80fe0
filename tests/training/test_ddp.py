"""DistributedDataParallel on the CPU: ``torchrun --nproc_per_node 2`` with the gloo backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import write_nnunet

SCRIPT = """
import os, sys
import torch
from medseg.training import Trainer
from medseg.transforms.augment import Augment
t = Trainer("unet", {"n_stages": 3, "base_channels": 4}, out_dir=sys.argv[2], patch_size=(16, 16, 16),
            batch_size=1, max_epochs=2, iterations_per_epoch=2, val_every=2, optimizer="adamw", lr=1e-2,
            progress=False, augment=Augment(p_rotate=0.0))
r = t.fit(sys.argv[1], fold=0, n_folds=2)
checksum = sum(float(p.double().sum()) for p in t.network.parameters())
# each rank writes its own file: lines printed by two processes into one pipe can interleave
line = f"rank={os.environ['RANK']} world={os.environ['WORLD_SIZE']} epochs={r.epochs} checksum={checksum:.10e}"
with open(os.path.join(sys.argv[3], "rank" + os.environ["RANK"] + ".txt"), "w") as fh:
    fh.write(line)
"""


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    data = write_nnunet(tmp_path / "ds", shape=(24, 24, 24), spacing=(2.5, 2.5, 2.5))
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(data), str(tmp_path / "run"), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert [line.split()[0] for line in lines] == ["rank=0", "rank=1"]
    assert all("world=2 epochs=2" in line for line in lines)
    # DDP keeps the replicas identical
    assert lines[0].split("checksum=")[1] == lines[1].split("checksum=")[1]
    log = (tmp_path / "run" / "fold_0" / "log.csv").read_text().splitlines()
    assert len(log) == 3 and (tmp_path / "run" / "fold_0" / "best.pt").exists()
