"""Core data model: :class:`Volume`, :class:`Grid`, history, registries, steps and geometry helpers."""

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
