"""Core data model: :class:`Volume`, :class:`Grid`, history, registries, steps and geometry helpers.

Names are loaded on first use, so importing :mod:`medseg.core.registry` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader as _lazy

__getattr__, __dir__, _ = _lazy.attach(
    __name__,
    submod_attrs={
        "geometry": ["LPS_TO_RAS", "make_affine"],
        "registry": ["Registry"],
        "steps": ["STEPS", "Step", "build_step", "invert", "register_step"],
        "volume": ["KINDS", "Grid", "HistoryEntry", "Kind", "Volume"],
    },
)

if TYPE_CHECKING:
    from medseg.core.geometry import LPS_TO_RAS, make_affine
    from medseg.core.registry import Registry
    from medseg.core.steps import STEPS, Step, build_step, invert, register_step
    from medseg.core.volume import KINDS, Grid, HistoryEntry, Kind, Volume

__all__ = [
    "KINDS",
    "LPS_TO_RAS",
    "STEPS",
    "Grid",
    "HistoryEntry",
    "Kind",
    "Registry",
    "Step",
    "Volume",
    "build_step",
    "invert",
    "make_affine",
    "register_step",
]
