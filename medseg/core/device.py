"""Device names → ``torch.device``, checked against what this machine has (one owner for train and predict)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from medseg.errors import ConfigError

if TYPE_CHECKING:
    import torch

_NAME = re.compile(r"^(auto|cpu|gpu|cuda|mps)(:(\d+))?$")


def resolve_device(name: str | torch.device, *, option: str = "device") -> torch.device:
    """The device for ``name``: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
    ``"cuda:1"``, ``"gpu"`` (= ``"cuda"``), ``"mps"``.

    Args:
        name: the device as the user wrote it, or a ``torch.device``.
        option: where the user wrote it (``"--device"``, ``"inference.device"``, ...), named in errors
            so the fix can be made there.

    Raises:
        ConfigError: an unknown name, or a device this machine does not have (e.g. ``cuda`` without a
            CUDA GPU, ``cuda:1`` with one GPU).
    """
    import torch

    if isinstance(name, torch.device):
        text = str(name)
    else:
        text = str(name).strip().lower()
    m = _NAME.match(text)
    if m is None:
        raise ConfigError(f"{option}: unknown device {name!r}; use auto, cpu, cuda, cuda:N (or gpu) or mps")
    kind, index = m.group(1), m.group(3)
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(
                f"{option} is {name!r} but this machine has no Apple GPU (MPS); set {option} to auto or cpu"
            )
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ConfigError(f"{option} is {name!r} but no CUDA GPU is available here; set {option} to auto or cpu")
    count = torch.cuda.device_count()
    if index is not None and int(index) >= count:
        raise ConfigError(
            f"{option} is {name!r} but this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1}); "
            "choose one of those"
        )
    return torch.device("cuda", int(index) if index is not None else None)
