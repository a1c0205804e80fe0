"""Reduced precision: chosen from what the hardware computes natively, said in the log, agreeing with float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.core import precision as precision_module
from medseg.core.precision import choose_precision, cpu_bf16_flags, training_precision
from medseg.errors import ConfigError
from tests.conftest import ROOT

CPU = torch.device("cpu")
NATIVE_BF16 = bool(cpu_bf16_flags())


def test_auto_is_bfloat16_only_on_cpus_with_native_bfloat16(monkeypatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    choice = choose_precision("auto", CPU)
    assert choice.dtype == torch.bfloat16 and "avx512_bf16" in choice.reason
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: ())
    choice = choose_precision("auto", CPU)
    assert choice.dtype is None and "no native bfloat16" in choice.reason
    forced = choose_precision("bfloat16", CPU)
    assert forced.dtype == torch.bfloat16 and "emulated" in forced.reason
    assert choose_precision("float32", CPU).dtype is None


def test_bad_precisions_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"--precision: unknown precision 'bf16'"):
        choose_precision("bf16", CPU, option="--precision")
    with pytest.raises(ConfigError, match="float16 is for GPUs"):
        choose_precision("float16", CPU)


def test_training_on_the_cpu_stays_float32_unless_measured_or_forced(monkeypatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: ("amx_bf16",))
    assert training_precision(False, "bfloat16", CPU).dtype is None
    assert training_precision(True, "bfloat16", CPU).dtype == torch.bfloat16
    monkeypatch.setattr(precision_module, "CPU_TRAINING_BF16", False)
    assert training_precision(None, "bfloat16", CPU).dtype is None
    monkeypatch.setattr(precision_module, "CPU_TRAINING_BF16", True)
    assert training_precision(None, "bfloat16", CPU).dtype == torch.bfloat16


@pytest.mark.parametrize("downsampling", ["max_pool", "strided_conv"])
def test_bfloat16_unet_shapes_down_to_one_voxel_agree_with_float32(downsampling: str) -> None:
    """PyTorch issue 169688: bf16 3D convolutions with output width 1 and stride > 1 went wrong on AMX CPUs.
    Our U-Nets reach width 1 at the bottom of anisotropic or small patches; the logits must still agree."""
    from medseg.networks import build_network

    torch.manual_seed(0)
    net = build_network("unet", in_channels=1, out_channels=3, spatial_dims=3, n_stages=5, base_channels=8,
                        downsampling=downsampling).eval()  # fmt: skip
    x = torch.randn(2, 1, 32, 32, 16)  # the deepest stage is 2 × 2 × 1
    with torch.no_grad():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x).float()
    rel = float((low - ref).norm() / ref.norm())
    assert rel < 0.05, rel
    assert float((low.argmax(1) == ref.argmax(1)).float().mean()) > 0.97


@pytest.mark.skipif(not NATIVE_BF16, reason="the CPU has no native bfloat16 (avx512_bf16 or amx_bf16)")
def test_demo_model_bfloat16_labels_agree_with_float32() -> None:
    import medseg
    from medseg.metrics import dice
    from medseg.pipeline import Pipeline
    from medseg.transforms import Resample

    pipeline = Pipeline.from_yaml(ROOT / "pipelines" / "brain_mask_mr.yaml")
    image = Resample(spacing=(2.0, 2.0, 2.0))(medseg.read(ROOT / "sample_data" / "colin27" / "ch2.nii.gz"))
    image = image.replace(history=())
    full = pipeline.predict(image, device="cpu", precision="float32")
    half = pipeline.predict(image, device="cpu", precision="bfloat16")
    assert half.grid == full.grid
    score = dice(half.numpy()[0], full.numpy()[0], label=1)
    assert score >= 0.99, score
    assert not np.array_equal(half.numpy(), np.zeros_like(half.numpy()))


def test_the_log_says_which_precision_and_why(caplog) -> None:
    from medseg.inference import Predictor

    with caplog.at_level("INFO", logger="medseg.inference.predictor"):
        Predictor(torch.nn.Conv3d(1, 2, 1), patch_size=(8, 8, 8), device="cpu", precision="float32")
    assert "network precision: float32 (requested)" in caplog.text
