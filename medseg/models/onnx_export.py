"""ONNX copies of a package's networks, checked against torch before they are written.

``medseg model export --onnx`` converts each fold with ``torch.onnx.export`` (the ``torch.export``
based exporter; batch and spatial axes dynamic, or the fixed patch size when the network cannot
be exported with dynamic sizes), runs the file with ONNX Runtime on a seeded random window and
refuses it when any output differs from torch's by more than :data:`TOLERANCE` relative to the largest
logit (float32: summation order differs between the two runtimes; over a 96³ window's instance norms that
reaches ~1e-4 of the logits' range, never a different label in practice). The
package then also holds ``pipeline_onnx.yaml``: the same pipeline with an ``onnx`` network whose
``path`` lists every fold (a fold ensemble, like ``inference.checkpoints``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.errors import ConfigError

#: Largest difference allowed between ONNX Runtime's and torch's outputs, as a fraction of the largest |logit|
#: (at least 1: small logits are compared absolutely).
TOLERANCE = 1e-4


def _export(network: nn.Module, example: torch.Tensor, dynamic: bool) -> bytes:
    dim = torch.export.Dim.DYNAMIC
    shapes = ({0: dim, **{a: dim for a in range(2, example.ndim)}},) if dynamic else None
    # torch's exporter prints progress and warns about its own internals; neither is the user's concern
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            network,
            (example,),
            None,
            dynamo=True,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=shapes,
            verbose=False,
        )
    if program is None:
        raise ConfigError("torch.onnx.export returned no program")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        program.save(str(path))
        return path.read_bytes()


def onnx_difference(data: bytes, network: nn.Module, example: torch.Tensor) -> float:
    """Largest difference between ONNX Runtime's output of ``data`` and torch's on ``example``, divided by
    ``max(1, max |torch's output|)``."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (ours,) = session.run(None, {session.get_inputs()[0].name: example.numpy()})
    with torch.no_grad():
        reference = network(example).float().numpy()
    if ours.shape != reference.shape:
        return float("inf")
    return float(np.abs(ours - reference).max()) / max(1.0, float(np.abs(reference).max()))


def export_onnx(network: nn.Module, example: torch.Tensor, where: str = "network") -> tuple[bytes, bool]:
    """``network`` as ONNX bytes, checked against torch on ``example`` ``(1, C, *patch)``.

    Returns:
        ``(bytes, dynamic)``: dynamic is False when only the example's spatial size is accepted.

    Raises:
        ConfigError: onnxruntime is missing, the export fails, or the outputs differ by more than
            :data:`TOLERANCE`.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("--onnx needs onnx, onnxscript and onnxruntime: pip install 'medseg[onnx]'") from None
    network = network.eval()
    try:
        data, dynamic = _export(network, example, dynamic=True), True
    except Exception:  # some networks only export with fixed sizes; try that before giving up
        try:
            data, dynamic = _export(network, example, dynamic=False), False
        except Exception as exc:
            first = " ".join(str(exc).split())[:300]
            raise ConfigError(f"{where}: torch.onnx.export failed ({type(exc).__name__}: {first})") from exc
    diff = onnx_difference(data, network, example)
    if not diff <= TOLERANCE:
        raise ConfigError(
            f"{where}: the ONNX network's output differs from torch's by {diff:.2g} of its largest logit "
            f"(> {TOLERANCE:g}); not exported"
        )
    return data, dynamic


def export_folds(
    config: dict[str, Any], files: dict[str, bytes], folds: list[str], described: dict[str, Any]
) -> dict[str, bytes]:
    """``onnx/FOLD.onnx`` for every fold's packaged checkpoint, and ``pipeline_onnx.yaml`` that uses them."""
    import yaml

    from medseg.training import load_checkpoint

    options = described["options"]
    dims = int(options.get("spatial_dims", 3))
    patch = config["inference"].get("patch_size") or config.get("training", {}).get("patch_size")
    if not patch:
        raise ConfigError("--onnx: the pipeline has no inference.patch_size to check the ONNX network with")
    patch = [int(p) for p in patch][:dims]
    channels = len(config["input"]["channels"])
    example = torch.randn(1, channels, *patch, generator=torch.Generator().manual_seed(0))
    out: dict[str, bytes] = {}
    dynamic = True
    with tempfile.TemporaryDirectory() as tmp:
        for fold in folds:
            path = Path(tmp) / f"{fold}.pt"
            path.write_bytes(files[f"weights/{fold}.pt"])
            network = load_checkpoint(path).build_network("cpu")
            data, fold_dynamic = export_onnx(network, example, where=f"fold {fold}")
            out[f"onnx/{fold}.onnx"] = data
            dynamic = dynamic and fold_dynamic
    onnx_config = copy.deepcopy(config)
    net_options: dict[str, Any] = {
        "path": [f"onnx/{fold}.onnx" for fold in folds],
        "in_channels": channels,
        "out_channels": int(options.get("out_channels", max(int(k) for k in config["input"]["labels"]) + 1)),
        "output": "logits",
        "spatial_dims": dims,
    }
    if not dynamic:
        net_options["input_size"] = patch
    onnx_config["network"] = {"name": "onnx", "options": net_options}
    onnx_config["inference"]["checkpoints"] = []
    onnx_config["training"] = {}
    out["pipeline_onnx.yaml"] = yaml.safe_dump(onnx_config, sort_keys=False, default_flow_style=None).encode()
    return out
