"""Checkpoints: weights + everything predict needs, saved atomically, loaded ``weights_only``.

A checkpoint holds only tensors, dicts, lists, strings, numbers and None, so
``torch.load(path, weights_only=True)`` can read it; a model trained here can be used by
predict with no other file. It carries a SHA-256 of its content (``"sha256"``, see
:func:`content_sha256`), recomputed on load: a file with flipped bytes is refused instead of
predicting different masks or resuming from damaged weights.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import pickle
import platform
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.errors import CheckpointError, OutputError
from medseg.io import atomic_path

log = logging.getLogger(__name__)

FORMAT = "medseg-checkpoint"
FORMAT_VERSION = 1
#: The key holding the checksum of everything else in the checkpoint.
CHECKSUM_KEY = "sha256"


def plain(value: Any) -> Any:
    """``value`` as plain data (tuples → lists, numpy → Python) so ``weights_only`` loading works."""
    if isinstance(value, Mapping):
        return {k if isinstance(k, (int, str)) else str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool, torch.Tensor)):
        return value
    raise CheckpointError(f"cannot store {type(value).__name__} ({value!r}) in a checkpoint; use plain data")


def versions() -> dict[str, str]:
    """Versions of medseg, torch, MONAI, numpy and Python."""
    import monai

    import medseg

    return {
        "medseg": str(medseg.__version__),
        "torch": str(torch.__version__),
        "monai": str(monai.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
    }


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        network_name: registered network name (see :func:`medseg.networks.list_networks`).
        network_options: the options it was built with.
        state_dict: the weights.
        config: the full pipeline config given to the trainer.
        labels: label value → name (0 = background); for classifiers class index → name.
        channels: input channel names, in order.
        epoch: epochs completed.
        metrics: validation metrics at save time.
        versions: package versions at save time.
        training_state: what resuming needs: optimiser state, best score so far and its metrics,
            the global RNG states of torch, numpy and Python, the training time so far
            (``elapsed_s``, seconds: a time budget and its schedule continue from it), the
            iterations and validations done (empty in best.pt).
        training_summary: what the training cases looked like, for per-case quality control
            (:func:`medseg.qc.summary.training_summary`; empty in checkpoints saved before it was recorded).
        path: where it was loaded from.
    """

    network_name: str
    network_options: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    channels: list[str] = field(default_factory=list)
    epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    training_state: dict[str, Any] = field(default_factory=dict)
    training_summary: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def build_network(self, device: str | torch.device = "cpu") -> nn.Module:
        """The network with these weights, in eval mode, on ``device``.

        Raises:
            CheckpointError: the weights do not fit the network the options describe.
        """
        from medseg.networks import build_network

        net = build_network(self.network_name, **self.network_options)
        try:
            net.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise CheckpointError(
                f"{self.path}: weights do not fit network '{self.network_name}' with options "
                f"{self.network_options}: {first}"
            ) from exc
        return net.to(device).eval()


def save_checkpoint(
    path: str | os.PathLike[str],
    network: nn.Module,
    *,
    network_name: str,
    network_options: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    labels: Mapping[int, str] | None = None,
    channels: Sequence[str] | None = None,
    epoch: int = 0,
    metrics: Mapping[str, Any] | None = None,
    training_state: Mapping[str, Any] | None = None,
    training_summary: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``network`` and its description atomically (temp file, then rename). Returns the path.

    ``training_summary`` is the QC record of the training cases (:func:`medseg.qc.summary.training_summary`).
    """
    module: nn.Module = network.module if hasattr(network, "module") else network  # type: ignore[assignment]  # unwrap DDP
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "network_name": network_name,
        "network_options": plain(dict(network_options)),
        "state_dict": state,
        "config": plain(dict(config or {})),
        "labels": {int(k): str(v) for k, v in (labels or {}).items()},
        "channels": [str(c) for c in (channels or [])],
        "epoch": int(epoch),
        "metrics": plain(dict(metrics or {})),
        "versions": versions(),
        "training_state": plain(dict(training_state or {})),
        "training_summary": plain(dict(training_summary or {})),
    }
    write_checkpoint(path, payload)
    return Path(path)


def content_sha256(data: Mapping[str, Any]) -> str:
    """SHA-256 over a checkpoint's content except its checksum, in a deterministic order: dict items by
    key, each tensor as name path, dtype, shape and bytes, plain values by type and ``repr``."""
    h = hashlib.sha256()
    _digest(h, {k: v for k, v in data.items() if k != CHECKSUM_KEY})
    return h.hexdigest()


def _digest(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, Mapping):
        h.update(f"D{len(value)}|".encode())
        for k in sorted(value, key=lambda k: (type(k).__name__, str(k))):
            h.update(f"K{type(k).__name__}:{k}|".encode())
            _digest(h, value[k])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}|".encode())
        for v in value:
            _digest(h, v)
    else:
        h.update(f"V{type(value).__name__}:{value!r}|".encode())


def write_checkpoint(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Store ``data`` with its checksum at ``path`` atomically (temp file, then rename).

    Raises:
        OutputError: the disk is full (names the device and says how to resume) or the file cannot be written.
    """
    payload = checkpoint_bytes(data)
    final = Path(path)
    with atomic_path(final) as tmp:
        try:
            _write(tmp, payload)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            raise OutputError(
                f"no space left on {_mount_point(final.parent)} while writing {final}; free space and resume "
                "with the same 'medseg train' command (it continues from the last complete last.pt)"
            ) from exc


def checkpoint_bytes(data: dict[str, Any]) -> bytes:
    """``data`` serialised as a checkpoint file, with its checksum (``data[CHECKSUM_KEY]`` is set)."""
    data[CHECKSUM_KEY] = content_sha256(data)
    buffer = io.BytesIO()
    torch.save(data, buffer)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def _mount_point(folder: Path) -> str:
    """The file system ``folder`` lies on, as its mount point (what ``df`` shows)."""
    p = folder.resolve()
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return str(p)


def update_config(path: str | os.PathLike[str], **sections: Any) -> Path:
    """Replace sections of the pipeline config a checkpoint carries (e.g. ``postprocess=[...]``), atomically;
    weights and everything else stay as they are.

    Raises:
        CheckpointError: not a readable medseg checkpoint (see :func:`load_checkpoint`).
    """
    load_checkpoint(path)  # the same checks and errors
    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    data["config"] = {**dict(data.get("config") or {}), **plain(sections)}
    write_checkpoint(path, data)
    return Path(path)


def set_training_summary(path: str | os.PathLike[str], summary: Mapping[str, Any]) -> Path:
    """Replace the training summary a checkpoint carries (:func:`medseg.qc.summary.training_summary`), atomically;
    weights and everything else stay as they are (for checkpoints saved before summaries were recorded).

    Raises:
        CheckpointError: not a readable medseg checkpoint (see :func:`load_checkpoint`).
    """
    load_checkpoint(path)  # the same checks and errors
    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    data["training_summary"] = plain(dict(summary))
    write_checkpoint(path, data)
    return Path(path)


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    labels: Mapping[int, str] | None = None,
    channels: Sequence[str] | None = None,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Load a checkpoint with ``torch.load(weights_only=True)``.

    Args:
        path: the ``.pt`` file.
        labels: if given, the labels the caller expects; a difference raises.
        channels: if given, the channel names the caller expects; a difference raises.
        map_location: where tensors are loaded.

    Raises:
        CheckpointError: missing file, not a medseg checkpoint, content that does not match the
            checksum stored at save time (damaged), or saved for other labels/channels (the message
            names the file and the difference).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    try:
        data = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a Python object: never load it
        raise CheckpointError(
            f"{p}: not a readable medseg checkpoint (it holds Python objects other than tensors and plain data, "
            "which are refused for safety); give a file saved by medseg training"
        ) from exc
    except Exception as exc:  # torch raises many types for foreign/corrupt files
        first = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{p}: not a readable medseg checkpoint ({type(exc).__name__}: {first})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{p}: not a medseg checkpoint (no '{FORMAT}' marker); give a file saved by medseg training"
        )
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: checkpoint format {data['format_version']} is newer than this medseg reads ({FORMAT_VERSION}); upgrade medseg"
        )
    _check_sum(p, data)
    missing = [k for k in ("network_name", "network_options", "state_dict") if k not in data]
    if missing:
        raise CheckpointError(
            f"{p}: medseg checkpoint without {', '.join(missing)}; the file is incomplete, save it again"
        )
    ckpt = Checkpoint(
        network_name=data["network_name"],
        network_options=dict(data["network_options"]),
        state_dict=data["state_dict"],
        config=dict(data.get("config") or {}),
        labels={int(k): str(v) for k, v in (data.get("labels") or {}).items()},
        channels=list(data.get("channels") or []),
        epoch=int(data.get("epoch", 0)),
        metrics=dict(data.get("metrics") or {}),
        versions=dict(data.get("versions") or {}),
        training_state=dict(data.get("training_state") or {}),
        training_summary=dict(data.get("training_summary") or {}),
        path=p,
    )
    if labels is not None:
        expected = {int(k): str(v) for k, v in labels.items()}
        if expected != ckpt.labels:
            raise CheckpointError(
                f"{p}: saved for labels {ckpt.labels}, but {expected} are expected "
                f"(differences: {_diff(ckpt.labels, expected)}); use the checkpoint trained for these labels"
            )
    if channels is not None and list(channels) != ckpt.channels:
        raise CheckpointError(
            f"{p}: saved for input channels {ckpt.channels}, but {list(channels)} are given; "
            "give the images in the order the model was trained with"
        )
    return ckpt


def _check_sum(path: Path, data: dict[str, Any]) -> None:
    """Refuse a checkpoint whose content differs from what was saved (checkpoints older than the checksum load)."""
    stored = data.get(CHECKSUM_KEY)
    if stored is None:
        log.debug("%s: checkpoint written before checksums; its content cannot be verified", path)
        return
    if content_sha256(data) != stored:
        raise CheckpointError(
            f"{path}: damaged checkpoint: its content does not match the SHA-256 stored when it was saved; "
            "re-train, or resume from best.pt / use another fold's checkpoint, or copy the file again from its source"
        )


def _diff(saved: Mapping[int, str], expected: Mapping[int, str]) -> str:
    parts = []
    for k in sorted(set(saved) | set(expected)):
        if saved.get(k) != expected.get(k):
            parts.append(f"{k}: saved {saved.get(k)!r} vs expected {expected.get(k)!r}")
    return "; ".join(parts)


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU, numpy, Python) as checkpoint-safe plain data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(state), gauss_next],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` stored."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(gauss)))
    version, py_state, gauss_next = state["python"]
    random.setstate((int(version), tuple(int(v) for v in py_state), gauss_next))
