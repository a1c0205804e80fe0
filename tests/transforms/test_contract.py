"""Contract tests generated from the step registry: every pre-processing step gets them."""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import medseg.transforms  # noqa: F401  (registers the steps)
from medseg.core import STEPS, Volume
from medseg.transforms import build, invert
from tests.conftest import oblique_affine

AFFINE = oblique_affine()

#: Example options per registered pre-processing step (a function of the input volume).
EXAMPLES: dict[str, Callable[[Volume], dict[str, Any]]] = {
    "reorient": lambda v: {"axcodes": "LPS"},
    "resample": lambda v: {"spacing": (1.3, 0.8, 1.9)},
    "resample_to": lambda v: {"reference": v.grid.__class__((9, 11, 8), AFFINE @ np.diag([1.7, 1.4, 1.8, 1.0]))},
    "crop": lambda v: {"box": ((2, 15), (1, 16), (3, 10))},
    "crop_foreground": lambda v: {"threshold": 0.5, "margin_mm": 2.0},
    "pad": lambda v: {"multiple_of": 8},
    "clip": lambda v: {"low": 0.2, "high": 0.8},
    "scale_intensity": lambda v: {"low": 0.0, "high": 2.0},
    "zscore": lambda v: {"over": "nonzero"},
    "percentile_clip": lambda v: {"low": 0.1, "high": 0.9, "mean": 0.5, "std": 0.2},
    "scale_percentiles": lambda v: {"lower": 1.0, "upper": 99.0},
    "crop_by_model": lambda v: _stage_example(),
}


@functools.cache
def _stage_example() -> dict[str, Any]:
    """A TorchScript stage network (class 1 above 1.0 on the linear image), written once per session."""
    from tests.networks.files import Threshold, save_torchscript

    folder = Path(tempfile.mkdtemp(prefix="medseg-contract-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = save_torchscript(Threshold(threshold=1.0), folder / "stage.pt")
    return {
        "network": {"name": "torchscript", "options": {"path": str(path)}},
        "inference": {"patch_size": [8, 8, 8], "device": "cpu", "precision": "float32"},
        "margin_mm": 1.0,
    }


# medseg's own steps (other test modules register test-only steps in the same global registry)
PREPROCESS = [
    name
    for name in STEPS.names()
    if STEPS.get(name).stage == "preprocess" and STEPS.get(name).__module__.startswith("medseg.")
]
INTENSITY_STEPS = {"clip", "scale_intensity", "zscore", "percentile_clip", "scale_percentiles"}
#: Steps that run a network on the image: a label map cannot go through them
IMAGE_ONLY_STEPS = {"crop_by_model"}
SHAPE = (20, 18, 12)
GRAD = np.array([0.004, -0.003, 0.005])


def _linear_image() -> Volume:
    """An image whose value is a linear function of world position (linear resampling is exact)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1)
    world = idx @ AFFINE[:3, :3].T + AFFINE[:3, 3]
    arr = (world @ GRAD + 1.0).astype(np.float32)
    arr[2:4, 3:5, 4:6] = 0.0  # a few zeros for the nonzero options
    return Volume(arr[None], AFFINE, meta={"source": "linear.nii.gz"})


def _label() -> Volume:
    arr = np.zeros((1, *SHAPE), dtype=np.uint8)
    arr[0, 4:14, 3:12, 3:9] = 1  # inside the crop example box
    arr[0, 7:10, 6:9, 4:6] = 2
    return Volume(arr, AFFINE, kind="label")


def _step(name: str, volume: Volume):
    return build(name, **EXAMPLES[name](volume))


def test_every_preprocess_step_has_an_example():
    assert set(PREPROCESS) >= set(EXAMPLES)
    missing = set(PREPROCESS) - set(EXAMPLES)
    assert not missing, f"add contract examples for {sorted(missing)}"


@pytest.mark.parametrize("name", PREPROCESS)
def test_step_on_intensity_volume(name):
    vol = _linear_image()
    step = _step(name, vol)
    out = step(vol)
    assert isinstance(out, Volume)
    assert out.array.ndim == 4 and out.affine.shape == (4, 4)
    assert len(out.history) == len(vol.history) + 1
    entry = out.history[-1]
    assert entry.step == name
    json.dumps(entry.state)  # history is plain data
    if "out_shape" in entry.state:
        assert tuple(entry.state["out_shape"]) == out.spatial_shape
    if name not in INTENSITY_STEPS:
        # values stay attached to their world positions: output voxel value == f(world)
        idx = np.stack(np.meshgrid(*[np.arange(n) for n in out.spatial_shape], indexing="ij"), -1)
        src = idx @ (np.linalg.inv(vol.affine) @ out.affine)[:3, :3].T + (np.linalg.inv(vol.affine) @ out.affine)[:3, 3]
        inside = np.all((src >= 0) & (src <= np.array(SHAPE) - 1), axis=-1)
        src_int = np.clip(np.floor(src).astype(int), 0, np.array(SHAPE) - 2)
        away = ~np.any(
            [np.all((src_int >= lo) & (src_int <= hi), axis=-1) for lo, hi in [((1, 2, 3), (4, 5, 6))]], axis=0
        )
        keep = inside & away
        assert keep.mean() > 0.3
        world = idx @ out.affine[:3, :3].T + out.affine[:3, 3]
        np.testing.assert_allclose(out.numpy()[0][keep], (world @ GRAD + 1.0)[keep], atol=1e-4)
    # the inverse brings a prediction back onto the input grid
    for kind in ("probability", "label"):
        pred = out.replace(
            kind=kind, array=out.numpy() if kind == "probability" else (out.numpy() > 0.5).astype(np.uint8)
        )
        back = invert(pred, out.history[-1:])
        assert back.grid.matches(vol.grid, atol=1e-9)
        assert back.n_channels == 1


@pytest.mark.parametrize("name", PREPROCESS)
def test_step_on_label_volume(name):
    lab = _label()
    if name in IMAGE_ONLY_STEPS:
        from medseg.errors import InputError

        with pytest.raises(InputError, match="runs a network on images"):
            _step(name, lab)(lab)
        return
    out = _step(name, lab)(lab)
    assert isinstance(out, Volume) and out.kind == "label"
    if name in INTENSITY_STEPS:
        assert out is lab  # intensity steps leave labels alone
        return
    assert len(out.history) == 1
    assert out.numpy().dtype == np.uint8
    assert set(np.unique(out.numpy())) <= {0, 1, 2}
    back = invert(out, out.history)
    assert back.grid.matches(lab.grid, atol=1e-9)
    if name in ("reorient", "crop", "crop_foreground", "pad"):
        np.testing.assert_array_equal(back.numpy(), lab.numpy())  # exact for non-interpolating steps


@pytest.mark.parametrize("name", PREPROCESS)
def test_step_accepts_tensors_and_options_round_trip(name):
    vol = _linear_image()
    step = _step(name, vol)
    tvol = vol.to("cpu")
    out = step(tvol)
    assert isinstance(out.array, torch.Tensor) and out.device == "cpu"
    np.testing.assert_allclose(out.numpy(), step(vol).numpy())
    assert build(name, **step.options()) == step
