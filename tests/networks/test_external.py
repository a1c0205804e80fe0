"""Networks that carry their weights: TorchScript and ONNX files built in the tests, run through pipelines."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.core import Volume, make_affine
from medseg.errors import CheckpointError, ConfigError
from medseg.inference import Predictor
from medseg.networks import build_network, network_info
from medseg.networks.external import resolve_weights_path, to_logits
from medseg.pipeline import Pipeline
from tests.networks.files import Threshold, save_onnx, save_torchscript

PIPELINE = """
name: carried
input: {{modality: MR, channels: [T1], labels: {{1: bright}}}}
preprocess:
  - reorient: {{axcodes: RAS}}
network: {{name: {name}, options: {{path: {path}{extra}}}}}
inference: {{patch_size: [16, 16, 16], precision: float32}}
"""


def _phantom() -> Volume:
    rng = np.random.default_rng(3)
    a = rng.normal(60.0, 10.0, (1, 30, 26, 20)).astype(np.float32)
    a[0, 5:14, 8:20, 4:12] += 100.0
    affine = make_affine((1.2, 0.9, 2.0), (10.0, -5.0, 3.0), np.diag([-1.0, -1.0, 1.0]))  # LPS
    return Volume(a, affine)


def _pipeline(tmp_path: Path, name: str, path: str, extra: str = "") -> Pipeline:
    f = tmp_path / "pipe.yaml"
    f.write_text(PIPELINE.format(name=name, path=path, extra=extra))
    return Pipeline.from_yaml(f)


def _reference(volume: Volume) -> np.ndarray:
    """The same threshold network as a plain torch module through the Predictor."""
    from medseg.transforms import Reorient

    return (
        Predictor(Threshold(), preprocess=[Reorient()], patch_size=(16, 16, 16), precision="float32")
        .predict(volume)
        .numpy()
    )


@pytest.mark.parametrize("output", ["logits", "softmax", "sigmoid"])
def test_torchscript_network_predicts_like_the_module(tmp_path, output) -> None:
    save_torchscript(Threshold(output=output), tmp_path / "model.pt")
    extra = f", output: {output}"
    pipeline = _pipeline(tmp_path, "torchscript", "model.pt", extra)  # relative to the pipeline file
    volume = _phantom()
    labels = pipeline.predict(volume)
    assert labels.grid.matches(volume.grid)
    assert np.array_equal(labels.numpy(), _reference(volume))
    assert int(labels.numpy().sum()) == 9 * 12 * 8


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime (medseg[onnx])")
def test_onnx_network_equals_torch_and_predicts_the_same(tmp_path) -> None:
    module = Threshold(output="softmax")
    save_onnx(module, tmp_path / "model.onnx", torch.randn(1, 1, 8, 8, 8))
    net = build_network("onnx", path=str(tmp_path / "model.onnx"), output="softmax")
    x = torch.randn(2, 1, 12, 10, 14) * 50 + 100
    with torch.no_grad():
        expected = torch.log(module(x).clamp_min(1e-12))
        assert torch.allclose(net(x), expected, atol=1e-4)
    pipeline = _pipeline(tmp_path, "onnx", "model.onnx", ", output: softmax")
    volume = _phantom()
    assert np.array_equal(pipeline.predict(volume).numpy(), _reference(volume))


def test_declared_shapes_that_do_not_fit_are_clear_errors(tmp_path) -> None:
    save_torchscript(Threshold(), tmp_path / "model.pt")
    net = build_network("torchscript", path=str(tmp_path / "model.pt"), in_channels=2)
    with pytest.raises(ConfigError, match=r"refused input of shape \(1, 2, 8, 8, 8\)"):
        net(torch.zeros(1, 2, 8, 8, 8))
    net = build_network("torchscript", path=str(tmp_path / "model.pt"), out_channels=3)
    with pytest.raises(ConfigError, match=r"returned shape \(1, 2, 8, 8, 8\).*expected \(1, 3, 8, 8, 8\)"):
        net(torch.zeros(1, 1, 8, 8, 8))
    # a fixed input size that the window does not have: stops before any case runs
    pipeline = _pipeline(tmp_path, "torchscript", "model.pt", ", input_size: [32, 32, 32]")
    with pytest.raises(ConfigError, match=r"takes input of size \[32, 32, 32\] only.*inference.patch_size"):
        pipeline.predictor()
    # labels the network outputs must be the pipeline's
    with pytest.raises(ConfigError, match=r"network.options: the network outputs labels \[1, 2\]"):
        _pipeline(tmp_path, "torchscript", "model.pt", ", out_channels: 3")


def test_label_values_reorder_channels() -> None:
    logits = torch.tensor([[[[[0.0]]], [[[5.0]]]]])  # (1, 2, 1, 1, 1): channel 1 wins
    from medseg.networks.external import CarriedWeightsNetwork

    net = CarriedWeightsNetwork(
        lambda x: logits, path=Path("f"), in_channels=1, out_channels=2, output="logits",
        label_values=[0, 3], spatial_dims=3, input_size=None, divisor=(1, 1, 1),
    )  # fmt: skip
    out = net(torch.zeros(1, 1, 1, 1, 1))
    assert out.shape == (1, 4, 1, 1, 1) and int(out.argmax(1)) == 3


def test_outputs_become_logits_whose_softmax_is_the_probability() -> None:
    p = torch.tensor([0.2, 0.7, 0.5]).reshape(1, 1, 3, 1, 1)
    two = torch.softmax(to_logits(p, "sigmoid"), dim=1)
    assert torch.allclose(two[:, 1], p[:, 0], atol=1e-6)
    probs = torch.softmax(torch.randn(1, 3, 4, 4, 4), dim=1)
    assert torch.allclose(torch.softmax(to_logits(probs, "softmax"), dim=1), probs, atol=1e-6)
    several = torch.tensor([0.3, 0.6]).reshape(1, 2, 1, 1, 1)  # two sigmoid labels: the one above 0.5 wins
    assert int(to_logits(several, "sigmoid").argmax(1)) == 2


def test_pickled_model_and_missing_files_are_refused(tmp_path) -> None:
    torch.save(Threshold(), tmp_path / "pickled.pt")
    with pytest.raises(ConfigError, match="pickled PyTorch file, not TorchScript"):
        build_network("torchscript", path=str(tmp_path / "pickled.pt"))
    with pytest.raises(ConfigError, match=r"network.options.path: nothere.pt: no such network file \(relative to"):
        _pipeline(tmp_path, "torchscript", "nothere.pt")
    save_torchscript(Threshold(), tmp_path / "model.pt")
    (tmp_path / "pipe.yaml").write_text(PIPELINE.format(name="torchscript", path="model.pt", extra=""))
    with pytest.raises(CheckpointError, match="carries its weights; remove inference.checkpoints"):
        Pipeline.from_yaml(tmp_path / "pipe.yaml").predictor([tmp_path / "model.pt"])


def test_package_paths_name_files_a_distribution_installed(tmp_path) -> None:
    with pytest.raises(ConfigError, match="'no_such_dist_xyz' is not installed.*pip install"):
        resolve_weights_path("package:no_such_dist_xyz/model.pt")
    with pytest.raises(ConfigError, match="has no file 'not/there.pt'"):
        resolve_weights_path("package:torch/not/there.pt")
    init = resolve_weights_path("package:torch/torch/__init__.py")
    assert init.is_file() and init.name == "__init__.py"


def test_registry_knows_they_carry_weights() -> None:
    assert network_info("torchscript").carries_weights and network_info("onnx").carries_weights
    assert not network_info("unet").carries_weights


def test_batch_fingerprint_covers_the_network_file(tmp_path) -> None:
    from medseg.pipeline.processor import PipelineProcessor

    save_torchscript(Threshold(100.0), tmp_path / "model.pt")
    pipeline = _pipeline(tmp_path, "torchscript", "model.pt")
    before = PipelineProcessor(pipeline, [], device="cpu").fingerprint()
    save_torchscript(Threshold(120.0), tmp_path / "model.pt")
    after = PipelineProcessor(pipeline, [], device="cpu")
    assert after.fingerprint() != before
    assert after.describe()["network_files"][0]["path"].endswith("model.pt")
