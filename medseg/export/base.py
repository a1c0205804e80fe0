"""The exporter contract, the ``EXPORTERS`` registry and the checks every export shares.

An exporter is a frozen dataclass whose fields are its options (the same names in
Python, in a pipeline's ``export:`` section and in :meth:`Registry.build`). Calling
it writes one case::

    paths = EXPORTERS.build("stl", smoothing=1.0)(mask, out_dir, "case_001", image=ct, labels={1: "liver"})

Before any writing the call checks that the mask lies on the image's grid, that
``case_id`` gives paths inside ``out_dir``, names unnamed labels ``label_N`` and
warns (without failing) when the mask is empty.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medseg.core.registry import Registry
from medseg.core.volume import Volume
from medseg.errors import ConfigError, InputError, InputWarning, OutputError
from medseg.export.labels import label_table

logger = logging.getLogger(__name__)

#: Exporter classes by name (``nifti``, ``nrrd``, ``seg_nrrd``, ``dicom_seg``, ``stl``, ...).
EXPORTERS: Registry[type[Exporter]] = Registry("exporter")

_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def register_exporter(name: str) -> Any:
    """Class decorator registering an exporter under ``name`` (its YAML/CLI name)."""
    return EXPORTERS.register(name)


def check_case_id(case_id: str) -> str:
    """Return ``case_id`` if it is a safe file-name stem, else raise :class:`OutputError`.

    Allowed: letters, digits, ``.``, ``_``, ``-``; starting with a letter or digit;
    at most 128 characters; no ``..``. So ``out_dir / f"{case_id}.nii.gz"`` always
    stays inside ``out_dir``.
    """
    if not isinstance(case_id, str) or not _CASE_ID.match(case_id) or ".." in case_id:
        raise OutputError(
            f"case id {case_id!r} cannot name output files: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..' or path separators"
        )
    return case_id


@dataclass(frozen=True)
class ExportCase:
    """One case ready to export (the checks done once for all exporters).

    Attributes:
        label_map: ``(X, Y, Z)`` integer label map (0 = background).
        mask: the mask Volume as given (``(C, X, Y, Z)``; probabilities keep their channels).
        image: the intensity image on the same grid, or None.
        labels: ``{value: name}`` for every present or named label (background excluded).
        case_id: safe file-name stem.
        out_dir: output folder.
    """

    label_map: np.ndarray
    mask: Volume
    image: Volume | None
    labels: dict[int, str]
    case_id: str
    out_dir: Path

    @property
    def affine(self) -> np.ndarray:
        """4×4 voxel → RAS mm affine of the mask grid."""
        return self.mask.affine

    @property
    def present(self) -> list[int]:
        """Label values with at least one voxel, sorted."""
        return [int(v) for v in np.unique(self.label_map) if v != 0]

    @property
    def is_empty(self) -> bool:
        """True when no voxel is labelled."""
        return not np.any(self.label_map)

    def label_volume(self) -> Volume:
        """The label map as a one-channel ``kind="label"`` Volume (uint8, or uint16 above 255)."""
        hi = int(self.label_map.max()) if self.label_map.size else 0
        dtype = np.uint8 if hi < 256 else np.uint16
        return self.mask.replace(array=self.label_map[None].astype(dtype), kind="label")

    def path(self, suffix: str) -> Path:
        """``out_dir / (case_id + suffix)``, checked to stay inside ``out_dir``."""
        p = self.out_dir / f"{self.case_id}{suffix}"
        if not p.resolve().is_relative_to(self.out_dir.resolve()):
            raise OutputError(f"{p}: output path leaves the output folder {self.out_dir}")
        return p


def to_label_map(mask: Volume) -> np.ndarray:
    """``(X, Y, Z)`` integer label map of a mask.

    One channel: integer labels (or booleans; floats must hold whole numbers).
    Several channels: ``kind="probability"`` or one-hot, channel 0 = background,
    reduced by argmax.

    Raises:
        InputError: a one-channel float mask with fractional or negative values.
    """
    arr = mask.numpy()
    if arr.shape[0] > 1:
        return np.argmax(arr, axis=0).astype(np.uint16 if arr.shape[0] > 256 else np.uint8)
    a = arr[0]
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.dtype.kind == "f" and (not np.all(np.isfinite(a)) or np.any(a != np.round(a))):
        raise InputError(
            f"{mask.meta.get('source') or 'mask'}: one-channel mask holds non-integer values "
            f"(dtype {a.dtype}); give a label map, or a probability volume with one channel per class"
        )
    if a.size and a.min() < 0:
        raise InputError(
            f"{mask.meta.get('source') or 'mask'}: negative label value {a.min()}; labels are 0, 1, 2, ..."
        )
    hi = int(a.max()) if a.size else 0
    if hi > 65535:
        raise InputError(f"{mask.meta.get('source') or 'mask'}: label value {hi} exceeds 65535")
    return a.astype(np.uint8 if hi < 256 else np.uint16)


def prepare(
    mask: Volume,
    out_dir: str | Path,
    case_id: str,
    *,
    image: Volume | None = None,
    labels: Mapping[int, str] | None = None,
) -> ExportCase:
    """Check inputs once and build the :class:`ExportCase` all exporters share.

    Raises:
        GeometryError: ``image`` is given and the mask is on another grid (names both).
        OutputError: unsafe ``case_id``.
        InputError: the mask is not a label map or probability volume.
    """
    check_case_id(case_id)
    if image is not None:
        image.require_grid(mask, "mask")
    label_map = to_label_map(mask)
    present = np.unique(label_map)
    table = label_table(present, labels)
    case = ExportCase(label_map, mask, image, table, case_id, Path(out_dir))
    if case.is_empty:
        warnings.warn(
            f"{case_id}: the mask is empty (no labelled voxel); exporting empty results",
            InputWarning,
            stacklevel=3,
        )
    return case


class Exporter(abc.ABC):
    """Base of every exporter: frozen dataclass subclasses implement :meth:`export`."""

    name: ClassVar[str] = ""

    def __call__(
        self,
        mask: Volume,
        out_dir: str | Path,
        case_id: str,
        *,
        image: Volume | None = None,
        labels: Mapping[int, str] | None = None,
    ) -> list[Path]:
        """Export one case; returns the written files.

        Args:
            mask: label map ``(1, X, Y, Z)`` (or probabilities ``(C, X, Y, Z)``, channel 0 = background).
            out_dir: output folder (created when missing).
            case_id: file-name stem of the outputs (letters, digits, ``._-``).
            image: intensity image on the same grid (needed by some formats), or None.
            labels: ``{value: name}``; unnamed labels become ``"label_N"``.
        """
        return self.export(prepare(mask, out_dir, case_id, image=image, labels=labels))

    @abc.abstractmethod
    def export(self, case: ExportCase) -> list[Path]:
        """Write the outputs of a prepared case; returns the written files."""

    def options(self) -> dict[str, Any]:
        """The exporter's options (its dataclass fields) as a dict."""
        if not dataclasses.is_dataclass(self):
            return {}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def build_exporters(specs: Sequence[str | Mapping[str, Any] | Exporter]) -> list[Exporter]:
    """Exporters from names, ``{name: {options}}`` mappings (pipeline style) or instances.

    Raises:
        ConfigError: unknown exporter or option (with did-you-mean), or a malformed entry.
    """
    out: list[Exporter] = []
    for i, spec in enumerate(specs):
        if isinstance(spec, Exporter):
            out.append(spec)
        elif isinstance(spec, str):
            out.append(EXPORTERS.build(spec))
        elif isinstance(spec, Mapping) and len(spec) == 1:
            ((name, options),) = spec.items()
            if options is not None and not isinstance(options, Mapping):
                raise ConfigError(f"export[{i}].{name}: options must be a mapping, got {options!r}")
            out.append(EXPORTERS.build(str(name), **dict(options or {})))
        else:
            raise ConfigError(f"export[{i}]: expected an exporter name or {{name: {{options}}}}, got {spec!r}")
    return out


def export_all(
    mask: Volume,
    out_dir: str | Path,
    case_id: str,
    exporters: Sequence[str | Mapping[str, Any] | Exporter],
    *,
    image: Volume | None = None,
    labels: Mapping[int, str] | None = None,
) -> list[Path]:
    """Run several exporters on one case (checks done once); returns all written files.

    Args:
        mask: label map ``(1, X, Y, Z)`` or probabilities ``(C, X, Y, Z)``.
        out_dir: output folder.
        case_id: file-name stem of the outputs.
        exporters: names (``"nifti"``), ``{"stl": {"smoothing": 1.0}}`` or exporter instances.
        image: intensity image on the mask's grid (DICOM for ``dicom_seg``), or None.
        labels: ``{value: name}``.
    """
    built = build_exporters(exporters)
    case = prepare(mask, out_dir, case_id, image=image, labels=labels)
    paths: list[Path] = []
    for exporter in built:
        written = exporter.export(case)
        logger.info("%s: %s wrote %s", case_id, exporter.name, ", ".join(p.name for p in written) or "nothing")
        paths.extend(written)
    return paths
