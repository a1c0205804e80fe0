"""The exporter contract, the ``EXPORTERS`` registry and the checks every export shares.

An exporter is a frozen dataclass whose fields are its options (the same names in
Python, in a pipeline's ``export:`` section and in :meth:`Registry.build`). Calling
it writes one case:

>>> import tempfile
>>> from medseg.data import ct_phantom
>>> from medseg.export import EXPORTERS
>>> ct, mask = ct_phantom((48, 48, 24), (2.0, 2.0, 3.0))
>>> paths = EXPORTERS.build("stats", formats=["csv"])(mask, tempfile.mkdtemp(), "case_001", image=ct,
...                                                    labels={1: "liver"})
>>> [p.name for p in paths]
['case_001_stats.csv']

Before any writing the call checks that the mask lies on the image's grid, that
``case_id`` gives paths inside ``out_dir``, names unnamed labels ``label_N`` and
warns (without failing) when the mask is empty.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medseg.core.labels import label_values
from medseg.core.registry import Registry
from medseg.core.volume import Volume
from medseg.errors import ConfigError, InputWarning, OutputError, did_you_mean
from medseg.export.labels import label_table
from medseg.io.naming import check_case_id

logger = logging.getLogger(__name__)

#: Exporter classes by name (``nifti``, ``nrrd``, ``seg_nrrd``, ``dicom_seg``, ``stl``, ...).
EXPORTERS: Registry[type[Exporter]] = Registry("exporter")


def register_exporter(name: str) -> Any:
    """Class decorator registering an exporter under ``name`` (its YAML/CLI name)."""
    return EXPORTERS.register(name)


def exporter_name(name: str) -> str | None:
    """The registered exporter a user's spelling means, or None.

    Every command and pipeline accepts the registered snake_case name (``seg_nrrd``,
    ``dicom_seg``) and the spelling of its file type (``seg.nrrd``, ``dicom-seg``,
    ``nii.gz``): case, ``-`` and ``.`` do not matter.
    """
    key = str(name).strip().lower().replace("-", "_").replace(".", "_")
    key = _SPELLINGS.get(key, key)
    return key if key in EXPORTERS else None


#: Spellings that are not the registered name with ``-``/``.`` turned into ``_``.
_SPELLINGS = {"nii": "nifti", "nii_gz": "nifti", "dcm": "dicom_seg", "mesh": "stl", "preview": "png"}


def exporter_names() -> list[str]:
    """Names to show users: each exporter's registered name, with its file-type spelling where it differs."""
    shown = []
    for name in EXPORTERS.names():
        dotted = {"seg_nrrd": "seg.nrrd", "dicom_seg": "dicom-seg"}.get(name)
        shown.append(f"{name} ({dotted})" if dotted else name)
    return shown


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
    return label_values(
        arr[0],
        mask.meta.get("source") or "mask",
        fix="give a label map, or a probability volume with one channel per class",
    )


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
        image.require_grid(
            mask, "mask", fix="give the image the mask was made on as the reference (medseg export --reference)"
        )
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
    elif label_map.size > 1 and bool(np.all(label_map)):
        warnings.warn(
            f"{case_id}: every voxel is labelled (no background); check the input and the model",
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
        """The exporter's options (its dataclass fields) as plain data (tuples become lists)."""
        if not dataclasses.is_dataclass(self):
            return {}
        return {f.name: _listify(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}


def _listify(value: Any) -> Any:
    return [_listify(v) for v in value] if isinstance(value, (tuple, list)) else value


def build_exporters(specs: Sequence[str | Mapping[str, Any] | Exporter]) -> list[Exporter]:
    """Exporters from names, ``{name: {options}}`` mappings (pipeline style) or instances.

    Raises:
        ConfigError: unknown exporter or option (with did-you-mean), or a malformed entry.
    """
    out: list[Exporter] = []
    for i, spec in enumerate(specs):
        if isinstance(spec, Exporter):
            out.append(spec)
            continue
        if isinstance(spec, str):
            name, options = spec, {}
        elif isinstance(spec, Mapping) and len(spec) == 1:
            ((name, options),) = spec.items()
            if options is not None and not isinstance(options, Mapping):
                raise ConfigError(f"export[{i}].{name}: options must be a mapping, got {options!r}")
        else:
            raise ConfigError(f"export[{i}]: expected an exporter name or {{name: {{options}}}}, got {spec!r}")
        canonical = exporter_name(str(name))
        if canonical is None:
            raise ConfigError(
                f"unknown exporter '{name}'{did_you_mean(str(name), EXPORTERS.names())}; "
                f"available: {', '.join(exporter_names())}"
            )
        out.append(EXPORTERS.build(canonical, **dict(options or {})))
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
        logger.debug("%s: %s wrote %s", case_id, exporter.name, ", ".join(p.name for p in written) or "nothing")
        paths.extend(written)
    return paths
