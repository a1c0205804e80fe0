"""medseg: medical image segmentation pipelines, from DICOM/NIfTI to meshes and DICOM SEG.

Top-level names are loaded on first use (PEP 562, as scikit-image does), so ``import medseg``
and ``medseg --help`` do not import torch, nibabel or pydicom until they are needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader as _lazy

from medseg.builtins import register_builtins as _register_builtins
from medseg.core.registry import set_populate_hook as _set_populate_hook
from medseg.core.threads import configure_openmp as _configure_openmp
from medseg.errors import ConfigError, GeometryError, InputError, MedsegError

_configure_openmp()  # before torch loads its OpenMP runtime (nothing above imports torch; see medseg.core.threads)

__version__ = "0.1.0"

_set_populate_hook(_register_builtins)

__getattr__, __dir__, _ = _lazy.attach(
    __name__,
    submod_attrs={
        "core.volume": ["Grid", "HistoryEntry", "Volume"],
        "io": ["find_series", "read", "write"],
    },
)

if TYPE_CHECKING:
    from medseg.core.volume import Grid, HistoryEntry, Volume
    from medseg.io import find_series, read, write

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
