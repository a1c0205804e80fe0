"""Core data model: :class:`Volume`, :class:`Grid`, :class:`HistoryEntry` and geometry helpers."""

from medseg.core.geometry import LPS_TO_RAS, make_affine
from medseg.core.volume import KINDS, Grid, HistoryEntry, Kind, Volume

__all__ = ["KINDS", "LPS_TO_RAS", "Grid", "HistoryEntry", "Kind", "Volume", "make_affine"]
from medseg.core.registry import Registry
from medseg.core.steps import STEPS, Step, build_step, invert, register_step

__all__ += ["STEPS", "Registry", "Step", "build_step", "invert", "register_step"]
