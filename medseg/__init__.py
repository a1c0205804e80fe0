"""medseg: medical image segmentation pipelines, from DICOM/NIfTI to meshes and DICOM SEG."""

from __future__ import annotations

from medseg.core import Grid, HistoryEntry, Volume
from medseg.errors import ConfigError, GeometryError, InputError, MedsegError
from medseg.io import find_series, read, write

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "GeometryError",
    "Grid",
    "HistoryEntry",
    "InputError",
    "MedsegError",
    "Volume",
    "__version__",
    "find_series",
    "read",
    "write",
]
