"""Two-stage (coarse-to-fine) pipelines: ``crop_by_model`` crops to a stage network's region and inverts exactly."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from medseg.core import Volume
from medseg.core.steps import invert
from medseg.errors import ConfigError, InputWarning
from medseg.pipeline import Pipeline
from medseg.pipeline.stages import region_box
from tests.conftest import oblique_affine
from tests.networks.files import Threshold, save_torchscript

FINE = """
name: {name}
input: {{modality: MR, channels: [T1], labels: {{1: object}}}}
preprocess:
{stage}  - reorient: {{axcodes: RAS}}
network: {{name: torchscript, options: {{path: fine.pt}}}}
inference: {{patch_size: [16, 16, 16], precision: float32, device: cpu}}
"""
STAGE = """  - reorient: {axcodes: LPI}
  - crop_by_model:
      network: {name: torchscript, options: {path: coarse.pt}}
      preprocess:
        - resample: {spacing: [4.0, 4.0, 4.0]}
      inference: {patch_size: [16, 16, 16], precision: float32, device: cpu}
      margin_mm: 6.0
"""


def _phantom() -> Volume:
    """An off-centre bright ellipsoid and a small bright blob far from it, on an oblique anisotropic grid."""
    shape = (60, 52, 40)
    rng = np.random.default_rng(5)
    a = rng.normal(50.0, 8.0, shape).astype(np.float32)
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    a[((i - 40) / 11.0) ** 2 + ((j - 16) / 8.0) ** 2 + ((k - 25) / 7.0) ** 2 <= 1.0] += 150.0
    a[4:7, 44:47, 3:6] += 150.0  # the distractor: the stage's keep-largest drops it
    return Volume(a[None], oblique_affine((1.5, 1.3, 2.0)), meta={"source": "phantom"})


@pytest.fixture
def pipelines(tmp_path: Path) -> tuple[Pipeline, Pipeline]:
    save_torchscript(Threshold(120.0), tmp_path / "coarse.pt")
    save_torchscript(Threshold(120.0), tmp_path / "fine.pt")
    one = tmp_path / "one.yaml"
    one.write_text(FINE.format(name="one-stage", stage=""))
    two = tmp_path / "two.yaml"
    two.write_text(FINE.format(name="two-stage", stage=STAGE))
    return Pipeline.from_yaml(one), Pipeline.from_yaml(two)


def test_two_stage_equals_one_stage_inside_the_box_and_is_background_outside(pipelines) -> None:
    one, two = pipelines
    volume = _phantom()
    single = one.predict(volume).numpy()[0]
    predictor = two.predictor()
    pre = predictor.run_preprocess(volume)
    at = next(i for i, h in enumerate(pre.history) if h.step == "crop_by_model")
    entry = pre.history[at]
    # the crop box lies on the grid the step saw (after the LPI reorientation): carry it back to the input grid
    in_box = np.zeros(entry.state["in_shape"], np.uint8)
    in_box[tuple(slice(lo, hi) for lo, hi in entry.state["box"])] = 1
    inside = invert(Volume(in_box[None], np.array(entry.state["in_affine"]), kind="label"), pre.history[:at])
    corners = np.argwhere(inside.numpy()[0] > 0)
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(corners.min(0), corners.max(0)))
    assert len(corners) == np.prod([b.stop - b.start for b in box])  # still a box on the input grid
    double = predictor.predict_preprocessed(volume, pre)
    assert double.grid.matches(volume.grid)  # on the input grid exactly
    result = double.numpy()[0]
    assert np.array_equal(result[box], single[box])
    outside = np.ones(result.shape, bool)
    outside[box] = False
    assert not result[outside].any()
    assert single[outside].sum() == 27  # the distractor, which the one-stage pipeline keeps
    # the box holds the whole object with the margin (6 mm = 4 / 5 / 3 voxels, give or take the coarse stage's
    # 4 mm edge), and is much smaller than the volume
    obj = np.argwhere(single[box] > 0)
    gaps = np.concatenate([obj.min(0), np.array([b.stop - b.start for b in box]) - obj.max(0) - 1])
    assert np.all(gaps >= 1) and np.all(gaps <= [7, 8, 6, 7, 8, 6]), gaps
    assert np.prod([b.stop - b.start for b in box]) < 0.25 * result.size


def test_fingerprint_and_pickling_cover_the_stage(pipelines, tmp_path) -> None:
    from medseg.pipeline.processor import PipelineProcessor
    from medseg.pipeline.weights import weight_files

    _, two = pipelines
    assert [p.name for p in weight_files(two)] == ["fine.pt", "coarse.pt"]
    before = PipelineProcessor(two, [], device="cpu").fingerprint()
    save_torchscript(Threshold(100.0), tmp_path / "coarse.pt")
    assert PipelineProcessor(two, [], device="cpu").fingerprint() != before
    step = two.preprocess[1]
    step.predictor()  # loaded: a TorchScript module cannot be pickled, the step drops it
    again = pickle.loads(pickle.dumps(step))
    assert again == step and again._predictor is None


def test_region_box_margins_and_plane_fraction() -> None:
    mask = np.zeros((40, 30, 20), bool)
    mask[10:20, 5:15, 4:8] = True
    mask[30, 25, 15] = True  # one stray voxel
    assert region_box(mask, (1.0, 1.0, 1.0)) == ((10, 31), (5, 26), (4, 16))
    assert region_box(mask, (1.0, 1.0, 1.0), min_plane_fraction=0.01) == ((10, 20), (5, 15), (4, 8))
    assert region_box(mask, (2.0, 1.0, 3.0), margin_mm=3.0, min_plane_fraction=0.01) == ((8, 22), (2, 18), (3, 9))
    assert region_box(mask, (1.0, 1.0, 1.0), margin_fraction=0.1, min_plane_fraction=0.01) == ((9, 21), (4, 16), (3, 9))
    assert region_box(np.zeros((4, 4, 4), bool), (1.0, 1.0, 1.0)) is None


def test_empty_region_keeps_the_volume_and_warns(pipelines, tmp_path) -> None:
    _, two = pipelines
    save_torchscript(Threshold(1e6), tmp_path / "coarse.pt")  # finds nothing
    two = Pipeline.from_yaml(tmp_path / "two.yaml")
    volume = _phantom()
    with pytest.warns(InputWarning, match="found no region; the whole volume goes to the next stage"):
        pre = two.predictor().run_preprocess(volume)
    assert pre.spatial_shape == volume.spatial_shape


def test_stage_mistakes_name_their_path(tmp_path) -> None:
    save_torchscript(Threshold(), tmp_path / "fine.pt")
    bad = STAGE.replace("resample: {spacing", "resampel: {spacing").replace("path: coarse.pt", "path: gone.pt")
    (tmp_path / "p.yaml").write_text(FINE.format(name="x", stage=bad))
    with pytest.raises(
        ConfigError,
        match=r"preprocess\[1\].crop_by_model: preprocess\[0\]: unknown step 'resampel' \(did you mean 'resample'\?\)",
    ):
        Pipeline.from_yaml(tmp_path / "p.yaml")
    (tmp_path / "p.yaml").write_text(FINE.format(name="x", stage=STAGE.replace("path: coarse.pt", "path: gone.pt")))
    with pytest.raises(
        ConfigError, match=r"preprocess\[1\].crop_by_model.network.options.path: gone.pt: no such network file"
    ):
        Pipeline.from_yaml(tmp_path / "p.yaml")
    no_patch = STAGE.replace("patch_size: [16, 16, 16], ", "")
    (tmp_path / "p.yaml").write_text(FINE.format(name="x", stage=no_patch))
    with pytest.raises(ConfigError, match=r"crop_by_model: inference.patch_size: required"):
        Pipeline.from_yaml(tmp_path / "p.yaml")


def test_a_stage_checkpoint_is_checked_like_the_pipelines(tmp_path) -> None:
    """A medseg checkpoint in a stage goes through the pipeline's network loader: labels the stage asks for
    must be among those it was trained for."""
    from medseg.errors import CheckpointError
    from medseg.networks import build_network
    from medseg.training.checkpoint import save_checkpoint

    opts = {"n_stages": 2, "base_channels": 2, "max_channels": 4, "in_channels": 1, "out_channels": 2}
    save_checkpoint(
        tmp_path / "coarse.pt", build_network("unet", **opts), network_name="unet", network_options=opts,
        labels={0: "background", 1: "head"}, channels=["T1"],
    )  # fmt: skip
    save_torchscript(Threshold(120.0), tmp_path / "fine.pt")
    stage = (
        "  - crop_by_model:\n"
        "      network: {name: unet, options: {n_stages: 2, base_channels: 2, max_channels: 4}}\n"
        "      inference: {patch_size: [16, 16, 16], checkpoints: [coarse.pt], precision: float32, device: cpu}\n"
        "      labels: [LABELS]\n"
    )
    for labels, ok in (("1", True), ("3", False)):
        path = tmp_path / f"p{labels}.yaml"
        path.write_text(FINE.format(name="two", stage=stage.replace("LABELS", labels)))
        step = Pipeline.from_yaml(path).preprocess[0]
        if ok:
            assert step.predictor().patch_size == (16, 16, 16)
        else:
            with pytest.raises(
                CheckpointError, match=r"crop_by_model: .*coarse.pt was trained for labels \[1\]; labels \[3\]"
            ):
                step.predictor()
