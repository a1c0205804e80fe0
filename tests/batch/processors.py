"""A real, small CaseProcessor for the batch tests: read → threshold → write a label map."""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import medseg
from medseg.batch import Case, output_path
from medseg.core import Volume
from medseg.errors import InputError


@dataclass
class ThresholdProcessor:
    """Label 1 where the first channel is above ``threshold`` (HU); ``delay_s`` slows ``run`` down.

    ``warn_on`` names case ids for which ``run`` issues a UserWarning (to test warning capture).
    """

    threshold: float = 0.0
    delay_s: float = 0.0
    channels: int = 1
    warn_on: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        config = {"threshold": self.threshold, "channels": self.channels, "medseg": medseg.__version__}
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()

    def describe(self) -> dict[str, object]:
        return {"pipeline": "threshold", "config": asdict(self), "device": "cpu"}

    def load(self, case: Case) -> tuple[str, Volume]:
        volumes = [medseg.read(p) for p in case.images]
        if sum(v.n_channels for v in volumes) != self.channels:
            raise InputError(
                f"case '{case.case_id}': {sum(v.n_channels for v in volumes)} channels, the pipeline expects "
                f"{self.channels}"
            )
        return case.case_id, volumes[0]

    def run(self, loaded: tuple[str, Volume]) -> Volume:
        case_id, volume = loaded
        if self.delay_s:
            time.sleep(self.delay_s)
        if case_id in self.warn_on:
            warnings.warn(f"{case_id}: suspicious intensities", UserWarning, stacklevel=2)
        mask = (volume.numpy()[:1] > self.threshold).astype(np.uint8)
        return volume.replace(array=mask, kind="label")

    def save(self, case: Case, result: Volume, out_dir: Path) -> dict[str, Path]:
        return {"label": medseg.write(result, output_path(out_dir, f"{case.case_id}.nii.gz"))}


@dataclass
class DieOnceProcessor(ThresholdProcessor):
    """Kills its own process (like an OOM kill or a pre-empted node) the first time it runs ``die_case``.

    ``marker`` is a file created before dying, so the retried task runs normally.
    """

    die_case: str = ""
    marker: str = ""

    def run(self, loaded: tuple[str, Volume]) -> Volume:
        if loaded[0] == self.die_case and not Path(self.marker).exists():
            Path(self.marker).write_text("died once")
            os._exit(1)
        return super().run(loaded)
