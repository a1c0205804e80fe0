"""Invertible pre-processing steps and patching, on CPU or GPU tensors.

Every step is a frozen dataclass registered under a snake_case name (its YAML name);
calling it on a :class:`~medseg.core.Volume` returns a new Volume whose history holds
what :func:`invert` needs to bring a prediction back to the original grid.
"""

from medseg.core.steps import build_step as build
from medseg.core.steps import invert
from medseg.transforms.patches import GridPatches, RandomPatches

__all__ = ["GridPatches", "RandomPatches", "build", "invert"]
