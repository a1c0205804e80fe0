"""A planning decision and its reason: the value, the rule that chose it, the numbers it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Origin = Literal["nnU-Net", "medseg"]


@dataclass(frozen=True)
class Decision:
    """One planned value with its explanation (a comment in ``pipeline.yaml``, a row of ``--explain``).

    Attributes:
        key: where the value goes in the pipeline file, e.g. ``"preprocess.resample"``,
            ``"training.patch_size"``, ``"network.options.strides"``.
        value: the planned value.
        rule: the rule, naming the nnU-Net function it reproduces when it does.
        numbers: the measured or fingerprinted numbers the rule was applied to.
        origin: ``"nnU-Net"`` (nnU-Net v2's default planner's rule) or ``"medseg"`` (beyond it).
    """

    key: str
    value: Any
    rule: str
    numbers: str
    origin: Origin = "nnU-Net"

    def text(self) -> str:
        """``rule (numbers)`` in one line."""
        return f"{self.rule} ({self.numbers})" if self.numbers else self.rule


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers for explanations: floats to ``digits`` significant digits, sequences as ``a×b×c``."""
    if isinstance(value, (list, tuple)):
        return "×".join(fmt(v, digits) for v in value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def fmt_bytes(n: float) -> str:
    """``1.23 GB`` / ``456 MB`` (decimal units, as ``--memory-gb``)."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def fmt_seconds(s: float) -> str:
    """``2.5 s`` / ``12 min`` / ``1.5 h``."""
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"
