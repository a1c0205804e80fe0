"""OpenMP's wait policy is set before torch loads it, unless the user chose one or turned it off."""

from __future__ import annotations

import os
import subprocess
import sys

from medseg.core.threads import WAIT_POLICY, configure_openmp
from tests.conftest import ROOT


def test_the_policy_is_set_kept_or_left_alone() -> None:
    assert "torch" in sys.modules  # in this process torch has loaded its runtime already: too late to set
    env: dict[str, str] = {}
    assert configure_openmp(env) == "late" and env == {}
    assert configure_openmp({"OMP_WAIT_POLICY": "ACTIVE"}) == "user"
    assert configure_openmp({"MEDSEG_THREADING": "off"}) == "off"


def _policy_seen_by_torch(**env: str) -> str:
    """What a fresh interpreter that imports medseg, then torch, has in its environment."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "MEDSEG_THREADING")}
    code = "import medseg, torch, os; torch.ones(1); print(os.environ.get('OMP_WAIT_POLICY', '-'))"
    run = subprocess.run(
        [sys.executable, "-c", code], env=clean | env | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_importing_medseg_first_sets_the_policy_for_torch() -> None:
    assert _policy_seen_by_torch() == WAIT_POLICY
    assert _policy_seen_by_torch(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    assert _policy_seen_by_torch(MEDSEG_THREADING="off") == "-"
