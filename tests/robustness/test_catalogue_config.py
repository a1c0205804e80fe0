"""Bad-input catalogue, configuration: pipeline YAML, checkpoints and training label maps.

Each case checks the error class, that the message names the file and says what is wrong,
and, where the operation writes (the training cache), that nothing usable was written.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medseg.errors import CheckpointError, ConfigError, GeometryError, InputError
from medseg.networks import build_network
from medseg.pipeline import Pipeline
from medseg.training import load_checkpoint, load_dataset, prepare_dataset, save_checkpoint
from tests.robustness.conftest import assert_empty, expect_error

TINY_UNET = {"in_channels": 1, "out_channels": 2, "n_stages": 2, "base_channels": 2, "max_channels": 4}

GOOD_YAML = """\
name: tiny
input: {modality: CT, channels: [CT], labels: {1: liver}}
preprocess:
  - reorient: {axcodes: RAS}
  - resample: {spacing: [2.0, 2.0, 2.0]}
network: {name: unet, options: {n_stages: 2, base_channels: 2, max_channels: 4}}
inference: {patch_size: [16, 16, 16]}
"""

#: id → (YAML text, fragments the ConfigError must contain)
YAML_CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "unknown_top_key": (
        GOOD_YAML + "postprocesing: []\n",
        ("unknown key 'postprocesing'", "did you mean 'postprocess'"),
    ),
    "unknown_step_option": (
        GOOD_YAML.replace("spacing: [2.0", "spacin: [2.0"),
        ("preprocess[1].resample", "unknown option 'spacin'", "did you mean 'spacing'"),
    ),
    "unknown_step": (GOOD_YAML.replace("reorient:", "reorinet:"), ("reorinet", "did you mean 'reorient'")),
    "unknown_section_key": (
        GOOD_YAML.replace("inference: {patch_size", "inference: {patch_sise"),
        ("inference", "unknown key 'patch_sise'", "did you mean 'patch_size'"),
    ),
    "wrong_type": (GOOD_YAML.replace("patch_size: [16, 16, 16]", "patch_size: big"), ("inference.patch_size",)),
    "wrong_type_in_step": (GOOD_YAML.replace("axcodes: RAS", "axcodes: [1, 2]"), ("preprocess[0].reorient",)),
    "negative_spacing": (GOOD_YAML.replace("[2.0, 2.0, 2.0]", "[-2.0, 2.0, 2.0]"), ("resample", "> 0 mm")),
    "zero_label": (GOOD_YAML.replace("labels: {1: liver}", "labels: {0: liver}"), ("input.labels", "≥ 1")),
    "tabs": (GOOD_YAML.replace("  - reorient", "\t- reorient"), ("invalid yaml", "line 4", "tabs")),
    "invalid_yaml": (GOOD_YAML + "inference: [unclosed\n", ("invalid yaml",)),
    "not_a_mapping": ("- just\n- a list\n", ("mapping of sections",)),
    "empty_file": ("", ("empty",)),
    "python_object_tag": (
        GOOD_YAML + "description: !!python/object/apply:os.system ['touch MARKER']\n",
        ("invalid yaml", "python/object"),
    ),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_bad_pipeline_file(case: str, tmp_path: Path) -> None:
    text, fragments = YAML_CASES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    expect_error(lambda: Pipeline.from_yaml(path), ConfigError, *fragments, name=path)
    assert not (tmp_path / "MARKER").exists() and not Path("MARKER").exists()


def test_good_pipeline_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD_YAML)
    assert Pipeline.from_yaml(path).labels == {1: "liver"}


def test_pipeline_missing_file(tmp_path: Path) -> None:
    expect_error(lambda: Pipeline.from_yaml(tmp_path / "nope.yaml"), ConfigError, "not found", name="nope.yaml")


# ---- checkpoints -----------------------------------------------------------------------------


@pytest.fixture
def saved_network():
    import torch

    torch.manual_seed(3)
    return build_network("unet", **TINY_UNET)


@pytest.fixture
def checkpoint(tmp_path: Path, saved_network) -> Path:
    net = saved_network
    return save_checkpoint(
        tmp_path / "model.pt",
        net,
        network_name="unet",
        network_options=TINY_UNET,
        labels={0: "background", 1: "liver"},
        channels=["CT"],
    )


def test_checkpoint_round_trip(checkpoint: Path, saved_network) -> None:
    import torch

    ckpt = load_checkpoint(checkpoint, labels={0: "background", 1: "liver"}, channels=["CT"])
    rebuilt = ckpt.build_network()
    saved = saved_network.state_dict()
    assert rebuilt.state_dict().keys() == saved.keys()
    assert all(torch.equal(v, saved[k]) for k, v in rebuilt.state_dict().items())
    x = torch.randn(1, 1, 16, 16, 16)
    assert torch.equal(rebuilt(x), saved_network.eval()(x))


def test_checkpoint_for_other_labels(checkpoint: Path) -> None:
    expect_error(
        lambda: load_checkpoint(checkpoint, labels={0: "background", 1: "liver", 2: "spleen"}),
        CheckpointError,
        "saved for labels",
        "2: saved None vs expected 'spleen'",
        name=checkpoint,
    )


def test_checkpoint_for_other_channels(checkpoint: Path) -> None:
    expect_error(
        lambda: load_checkpoint(checkpoint, channels=["T1", "T2"]), CheckpointError, "input channels", name=checkpoint
    )


def test_checkpoint_not_medseg(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, path)
    expect_error(lambda: load_checkpoint(path), CheckpointError, "not a medseg checkpoint", name=path)


def test_checkpoint_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    expect_error(lambda: load_checkpoint(path), CheckpointError, "not a readable medseg checkpoint", name=path)


def test_checkpoint_truncated(checkpoint: Path) -> None:
    checkpoint.write_bytes(checkpoint.read_bytes()[:2000])
    expect_error(lambda: load_checkpoint(checkpoint), CheckpointError, "not a readable", name=checkpoint)


def test_checkpoint_missing(tmp_path: Path) -> None:
    expect_error(lambda: load_checkpoint(tmp_path / "gone.pt"), CheckpointError, "no such checkpoint", name="gone.pt")


def test_checkpoint_weights_for_another_network(tmp_path: Path) -> None:
    net = build_network("unet", **TINY_UNET)
    other = {**TINY_UNET, "base_channels": 4, "max_channels": 8}
    path = save_checkpoint(tmp_path / "m.pt", net, network_name="unet", network_options=other)
    expect_error(lambda: load_checkpoint(path).build_network(), CheckpointError, "weights do not fit", name=path)


def test_checkpoint_with_marker_but_missing_fields(tmp_path: Path) -> None:
    path = tmp_path / "partial.pt"
    torch.save({"format": "medseg-checkpoint", "format_version": 1, "state_dict": {}}, path)
    expect_error(lambda: load_checkpoint(path), CheckpointError, "network_name", name=path)


# ---- training label maps ---------------------------------------------------------------------


def _nnunet(root: Path, label: np.ndarray, label_affine: np.ndarray | None = None, labels=None) -> Path:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    image = np.random.default_rng(0).normal(0, 1, label.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(image, affine), str(root / "imagesTr" / "case01_0000.nii.gz"))
    nib.save(
        nib.Nifti1Image(label, affine if label_affine is None else label_affine),
        str(root / "labelsTr" / "case01.nii.gz"),
    )
    meta = {"channel_names": {"0": "CT"}, "labels": labels or {"background": 0, "liver": 1}, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _label(values=(0, 1)) -> np.ndarray:
    lab = np.zeros((12, 10, 8), np.uint8)
    lab[3:7, 3:7, 2:5] = values[1]
    return lab


def test_label_on_another_grid(tmp_path: Path) -> None:
    root = _nnunet(tmp_path / "ds", _label(), label_affine=np.diag([2.0, 2.0, 3.0, 1.0]))
    cache = tmp_path / "cache"
    expect_error(
        lambda: prepare_dataset(load_dataset(root), None, cache),
        GeometryError,
        "not on the grid",
        "spacing (2, 2, 3) vs (2, 2, 2) mm",
        "case01",
        name="case01.nii.gz",
    )
    assert_empty(cache)


def test_label_of_another_shape(tmp_path: Path) -> None:
    root = _nnunet(tmp_path / "ds", _label())
    nib.save(
        nib.Nifti1Image(np.zeros((12, 10, 9), np.uint8), np.diag([2.0, 2.0, 2.0, 1.0])),
        str(root / "labelsTr" / "case01.nii.gz"),
    )
    cache = tmp_path / "cache"
    expect_error(lambda: prepare_dataset(load_dataset(root), None, cache), GeometryError, "(12, 10, 9)", name="case01")
    assert_empty(cache)


def test_negative_labels(tmp_path: Path) -> None:
    root = _nnunet(tmp_path / "ds", _label().astype(np.int16) - 1)
    cache = tmp_path / "cache"
    expect_error(lambda: prepare_dataset(load_dataset(root), None, cache), InputError, "negative", name="case01.nii.gz")
    assert not list(cache.rglob("meta.json")), "a failed case must not look complete in the cache"


def test_labels_outside_the_label_list(tmp_path: Path) -> None:
    root = _nnunet(tmp_path / "ds", _label(values=(0, 3)))
    cache = tmp_path / "cache"
    expect_error(lambda: prepare_dataset(load_dataset(root), None, cache), InputError, "3", name="case01.nii.gz")
    assert_empty(cache)


def test_float_labels(tmp_path: Path) -> None:
    lab = _label().astype(np.float32) * 1.5
    root = _nnunet(tmp_path / "ds", lab)
    cache = tmp_path / "cache"
    expect_error(lambda: prepare_dataset(load_dataset(root), None, cache), InputError, "integer", name="case01.nii.gz")
    assert_empty(cache)


def test_dataset_json_not_json(tmp_path: Path) -> None:
    root = _nnunet(tmp_path / "ds", _label())
    (root / "dataset.json").write_text("{labels: oops")
    expect_error(lambda: load_dataset(root), InputError, "not valid json", name="dataset.json")
