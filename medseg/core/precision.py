"""Reduced precision where the hardware computes it natively: bfloat16 on CPUs with AVX-512 BF16 or AMX,
bfloat16/float16 on CUDA GPUs; float32 everywhere else. One owner for inference and training.

Only the network runs under ``torch.autocast``; everything around it (window stitching, softmax,
resampling, argmax) stays float32.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from medseg.errors import ConfigError

if TYPE_CHECKING:
    import torch

Precision = Literal["auto", "float32", "bfloat16", "float16"]
PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
#: CPU flags (``/proc/cpuinfo``) of native bfloat16 arithmetic.
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_bf16_flags() -> tuple[str, ...]:
    """The native-bfloat16 CPU flags this machine has (read once; empty where /proc/cpuinfo is absent)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ()
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    return tuple(f for f in _BF16_FLAGS if f in flags)


@dataclass(frozen=True)
class PrecisionChoice:
    """What the network runs in, and why (for the log line).

    Attributes:
        dtype: the autocast dtype, or None for plain float32.
        reason: one phrase, e.g. ``"bfloat16: the CPU has avx512_bf16"``.
    """

    dtype: torch.dtype | None
    reason: str

    @property
    def name(self) -> str:
        return "float32" if self.dtype is None else str(self.dtype).removeprefix("torch.")

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[None]:
        """``torch.autocast`` for this choice on ``device`` (a no-op for float32)."""
        import torch

        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)


def choose_precision(requested: str, device: torch.device, *, option: str = "inference.precision") -> PrecisionChoice:
    """The precision the network runs in on ``device``.

    ``"auto"``: bfloat16 on a CPU with native bfloat16 (AVX-512 BF16 or AMX); on CUDA bfloat16 where the
    GPU supports it, else float16; float32 otherwise. An explicit ``"bfloat16"``/``"float16"`` is honoured
    where the device can run it at all (bfloat16 on a CPU without native support is emulated: slow).

    Raises:
        ConfigError: an unknown name, or float16 on a CPU (no CPU kernels worth using).
    """
    import torch

    if requested not in PRECISIONS:
        from medseg.errors import did_you_mean

        raise ConfigError(f"{option}: unknown precision {requested!r}{did_you_mean(requested, PRECISIONS)}")
    if requested == "float32" or device.type not in ("cpu", "cuda"):
        why = "requested" if requested == "float32" else f"{device.type} runs float32"
        return PrecisionChoice(None, f"float32 ({why})")
    if device.type == "cuda":
        if requested == "auto":
            if torch.cuda.is_bf16_supported():
                return PrecisionChoice(torch.bfloat16, "bfloat16 (the GPU supports it)")
            return PrecisionChoice(torch.float16, "float16 (the GPU has no bfloat16)")
        dtype = torch.bfloat16 if requested == "bfloat16" else torch.float16
        return PrecisionChoice(dtype, f"{requested} (requested)")
    flags = cpu_bf16_flags()
    if requested == "auto":
        if flags:
            return PrecisionChoice(torch.bfloat16, f"bfloat16 (the CPU has {', '.join(flags)})")
        return PrecisionChoice(None, "float32 (the CPU has no native bfloat16: no avx512_bf16 or amx_bf16)")
    if requested == "float16":
        raise ConfigError(f"{option}: float16 is for GPUs; on the CPU use auto, bfloat16 or float32")
    note = "" if flags else ", emulated: this CPU has no native bfloat16"
    return PrecisionChoice(torch.bfloat16, f"bfloat16 (requested{note})")


#: Whether ``training.amp: auto`` trains in bfloat16 on CPUs with native bfloat16. Measured on the
#: accuracy study's tasks (benchmarks/RESULTS.md, "CPU training in bfloat16"): 1.25–1.32× the
#: iterations, but a lower lesion Dice on the phantoms and one diverged run on Colin27, so not adopted.
CPU_TRAINING_BF16 = False


def training_precision(amp: bool | None, amp_dtype: str, device: torch.device) -> PrecisionChoice:
    """The precision of the training forward pass (``training.amp`` / ``training.amp_dtype``).

    ``amp=None`` (auto): ``amp_dtype`` on CUDA; on a CPU bfloat16 only when it has native bfloat16 and
    :data:`CPU_TRAINING_BF16` says it pays; ``True``: always reduced precision (bfloat16 on a CPU);
    ``False``: float32.
    """
    import torch

    if amp is False or device.type not in ("cpu", "cuda"):
        return PrecisionChoice(None, "float32 (training.amp is false)" if amp is False else f"float32 on {device.type}")
    if device.type == "cuda":
        dtype = torch.bfloat16 if amp_dtype == "bfloat16" else torch.float16
        return PrecisionChoice(dtype, f"{amp_dtype} (training.amp on CUDA)")
    flags = cpu_bf16_flags()
    if amp is None:
        if flags and CPU_TRAINING_BF16:
            return PrecisionChoice(torch.bfloat16, f"bfloat16 (the CPU has {', '.join(flags)})")
        why = "measured no gain at equal Dice" if flags else "the CPU has no native bfloat16"
        return PrecisionChoice(None, f"float32 (CPU training: {why}; training.amp: true forces bfloat16)")
    note = "" if flags else ", emulated: this CPU has no native bfloat16"
    return PrecisionChoice(torch.bfloat16, f"bfloat16 (training.amp is true{note})")
