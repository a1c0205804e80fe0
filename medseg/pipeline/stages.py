"""Coarse-to-fine (two-stage) pipelines: ``crop_by_model``, a step that runs a network to find the region.

The stage runs its own network (usually at a low resolution or a fixed size) on a copy of the
volume, through its own pre-processing, with medseg's :class:`~medseg.inference.Predictor` — so
its mask comes back onto the volume's grid exactly. The bounding box of the mask's region, with
a margin in mm and/or a fraction of its size, crops the volume for the rest of the pipeline. The
crop is recorded in the history like the ``crop`` step's, so the final prediction is pasted back
(background outside the box) and inverted to the input grid by the one mechanism every step uses.
TotalSegmentator's crop model and deepbet's box model work this way::

    preprocess:
      - reorient: {axcodes: RAS}
      - crop_by_model:
          network: {name: torchscript, options: {path: box.pt, output: softmax, input_size: [128, 128, 128]}}
          preprocess: [{resample: {shape: [128, 128, 128]}}, {zscore: {}}]
          inference: {patch_size: [128, 128, 128]}
          margin_mm: 10
      - resample: {shape: [256, 256, 256]}
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg.core.steps import Step, register_step
from medseg.core.volume import HistoryEntry, Volume
from medseg.errors import ConfigError, InputError, InputWarning

if TYPE_CHECKING:
    from medseg.inference import Predictor
    from medseg.pipeline.config import InferenceSpec, NetworkSpec

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
_LOCK = threading.Lock()  # loader threads of the batch engine may call the step at once: load the network once


def region_box(
    mask: np.ndarray,
    spacing: Sequence[float],
    *,
    margin_mm: float = 0.0,
    margin_fraction: float = 0.0,
    min_plane_fraction: float = 0.0,
) -> Box | None:
    """The bounding box of ``mask`` ``(X, Y, Z)`` with margins, as half-open voxel ranges (None: empty).

    Args:
        mask: the region, boolean.
        spacing: voxel size in mm per axis (for ``margin_mm``).
        margin_mm: added on every side, in mm (rounded out to whole voxels).
        margin_fraction: added on every side, as a fraction of the box's extent along that axis.
        min_plane_fraction: along each axis only slices with more than this fraction of their voxels
            in the region count (deepbet uses 0.02, so a few stray voxels do not widen the box).
    """
    box = []
    shape = mask.shape
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        fraction = mask.mean(axis=others)
        hits = np.flatnonzero(fraction > min_plane_fraction)
        if hits.size == 0:
            return None
        lo, hi = int(hits[0]), int(hits[-1]) + 1
        extra = margin_fraction * (hi - lo) + margin_mm / float(spacing[axis])
        box.append((max(math.floor(lo - extra + 1e-9), 0), min(math.ceil(hi + extra - 1e-9), int(shape[axis]))))
    return tuple(box)  # type: ignore[return-value]


@register_step("crop_by_model")
@dataclass(frozen=True)
class CropByModel(Step):
    """Run a stage network on the volume and crop to its region's bounding box plus a margin (two-stage pipelines).

    Attributes:
        network: the stage's network, ``{name, options}`` as in the pipeline's ``network`` section (a
            TorchScript/ONNX file, or a registered network with ``inference.checkpoints``).
        preprocess: the stage's own steps, applied to a copy of the volume before its network (e.g.
            ``resample`` to a coarse spacing or a fixed shape, intensity normalisation).
        inference: the stage's ``inference`` section (``patch_size`` required; ``checkpoints`` relative
            to the pipeline file).
        labels: the stage's output labels that make the region (default: every label but background).
        keep_largest: keep only the largest connected part of the region (26-connectivity).
        margin_mm: added on every side of the box, in mm.
        margin_fraction: added on every side, as a fraction of the box's size along that axis (deepbet: 0.1).
        min_plane_fraction: a slice counts only when more than this fraction of its voxels is in the region
            (deepbet: 0.02; 0: any voxel).
        empty: what happens when the stage finds no region: ``"keep"`` the whole volume (with a warning)
            or ``"error"`` (the case fails).
    """

    network: dict[str, Any]
    preprocess: list[Any] = field(default_factory=list)
    inference: dict[str, Any] = field(default_factory=dict)
    labels: list[int] | None = None
    keep_largest: bool = True
    margin_mm: float = 0.0
    margin_fraction: float = 0.0
    min_plane_fraction: float = 0.0
    empty: str = "keep"
    # built from the options, not options themselves
    _steps: list[Step] = field(init=False, repr=False, compare=False, default_factory=list)
    _base_dir: Path | None = field(init=False, repr=False, compare=False, default=None)
    _predictor: Any = field(init=False, repr=False, compare=False, default=None)  # a Predictor, once loaded

    def __post_init__(self) -> None:
        from pydantic import ValidationError

        from medseg.pipeline.config import InferenceSpec, NetworkSpec, pydantic_errors

        try:
            net = NetworkSpec.model_validate(self.network)
            inference = InferenceSpec.model_validate(self.inference)
        except ValidationError as exc:
            raise pydantic_errors("crop_by_model", exc) from exc
        if inference.patch_size is None:
            raise ConfigError("inference.patch_size: required (the stage network's window, e.g. its input size)")
        steps = _stage_steps(self.preprocess)
        for name in ("margin_mm", "margin_fraction"):
            if not (math.isfinite(float(getattr(self, name))) and float(getattr(self, name)) >= 0):
                raise ConfigError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if not 0.0 <= float(self.min_plane_fraction) < 1.0:
            raise ConfigError(f"min_plane_fraction must be in [0, 1), got {self.min_plane_fraction}")
        if self.empty not in ("keep", "error"):
            raise ConfigError(f"empty must be 'keep' or 'error', got {self.empty!r}")
        if self.labels is not None and (not self.labels or min(int(v) for v in self.labels) < 1):
            raise ConfigError(f"labels must list label values ≥ 1 (0 is background), got {self.labels!r}")
        object.__setattr__(self, "network", net.model_dump(mode="json"))
        object.__setattr__(self, "inference", inference.model_dump(mode="json"))
        object.__setattr__(self, "preprocess", [{s.name: s.options()} for s in steps])
        object.__setattr__(self, "_steps", steps)
        object.__setattr__(self, "_base_dir", None)
        object.__setattr__(self, "_predictor", None)

    # ---- files -----------------------------------------------------------------------------------
    def bind_base_dir(self, base: str | Path | None) -> None:
        """Resolve relative file paths against ``base`` (the pipeline file's folder) and check they exist.

        Raises:
            ConfigError: a network file or checkpoint is missing.
        """
        object.__setattr__(self, "_base_dir", Path(base) if base is not None else None)
        self.weight_files()
        for step in self._steps:
            if isinstance(step, CropByModel):
                step.bind_base_dir(base)

    def weight_files(self) -> list[Path]:
        """The files that decide the stage's mask (its network's file(s) or checkpoints, and nested stages')."""
        files = self._own_files()
        for step in self._steps:
            if isinstance(step, CropByModel):
                files += step.weight_files()
        return files

    def _own_files(self) -> list[Path]:
        """The stage network's own files: carried-weights file(s) or medseg checkpoints (several = folds)."""
        from medseg.pipeline.weights import carries_weights, resolved_paths

        base = self._base_dir or Path.cwd()
        spec = self._network_spec()
        if carries_weights(spec.name):
            return resolved_paths(spec, base)
        files = [_checkpoint_path(p, base) for p in self._inference_spec().checkpoints]
        if not files:
            raise ConfigError(
                f"inference.checkpoints: network '{spec.name}' needs a checkpoint (or use a network that carries "
                "its weights, such as torchscript or onnx)"
            )
        return files

    def __getstate__(self) -> dict[str, Any]:  # Dask pickles steps: the loaded network is rebuilt there
        state = dict(self.__dict__)
        state["_predictor"] = None
        return state

    # ---- the stage ---------------------------------------------------------------------------------
    def _network_spec(self) -> NetworkSpec:
        from medseg.pipeline.config import NetworkSpec

        return NetworkSpec.model_validate(self.network)

    def _inference_spec(self) -> InferenceSpec:
        from medseg.pipeline.config import InferenceSpec

        return InferenceSpec.model_validate(self.inference)

    def predictor(self) -> Predictor:
        """The stage's predictor (networks loaded once, on first use)."""
        with _LOCK:
            if self._predictor is None:
                object.__setattr__(self, "_predictor", self._make_predictor())
        assert self._predictor is not None
        return self._predictor

    def _make_predictor(self) -> Predictor:
        """The stage's networks and predictor, built and checked by the same functions as the pipeline's."""
        from medseg.core.device import resolve_device
        from medseg.pipeline.predict import build_predictor, networks_for
        from medseg.pipeline.weights import carries_weights

        inference = self._inference_spec()
        spec = self._network_spec()
        device = resolve_device(inference.device, option="crop_by_model.inference.device")
        nets = networks_for(
            spec,
            [] if carries_weights(spec.name) else self._own_files(),
            where="crop_by_model",
            base=self._base_dir or Path.cwd(),
            labels={},
            channels=None,
            device=device,
            region_labels=self.labels,
        )
        return build_predictor(
            nets,
            inference,
            self._steps,
            list(inference.patch_size or ()),
            device,
            mirror=tuple(inference.mirror_axes),
            precision=inference.precision,
            spatial_dims=int(spec.options.get("spatial_dims", 3)),
        )

    def region(self, volume: Volume) -> np.ndarray:
        """The stage's region ``(X, Y, Z)`` (bool) on ``volume``'s grid."""
        from medseg.postprocess.components import keep_largest_component

        # the stage starts from this volume: its prediction is inverted to here, not through earlier steps
        labels = self.predictor().predict(volume.replace(history=())).numpy()[0]
        mask = np.isin(labels, self.labels) if self.labels else labels > 0
        if self.keep_largest and mask.any():
            mask = keep_largest_component(mask.astype(np.uint8), per_label=False, connectivity=26) > 0
        return mask

    def __call__(self, volume: Volume) -> Volume:
        from medseg.transforms.croppad import shifted_affine
        from medseg.transforms.functional.convert import as_tensor
        from medseg.transforms.functional.croppad import crop
        from medseg.transforms.grid_state import grid_state

        if volume.kind != "intensity":
            raise InputError(
                f"{volume.meta.get('source') or 'volume'}: crop_by_model runs a network on images; got a "
                f"{volume.kind} volume"
            )
        mask = self.region(volume)
        box = region_box(
            mask,
            volume.spacing,
            margin_mm=float(self.margin_mm),
            margin_fraction=float(self.margin_fraction),
            min_plane_fraction=float(self.min_plane_fraction),
        )
        source = volume.meta.get("source") or "volume"
        if box is None:
            if self.empty == "error":
                raise InputError(f"{source}: the crop_by_model stage found no region; is this the right kind of image?")
            warnings.warn(
                f"{source}: the crop_by_model stage found no region; the whole volume goes to the next stage",
                InputWarning,
                stacklevel=2,
            )
            box = tuple((0, int(n)) for n in volume.spatial_shape)  # type: ignore[assignment]
        assert box is not None
        x = crop(as_tensor(volume.array), box)
        state = grid_state(volume, x.shape[1:], box=[list(b) for b in box], region_voxels=int(mask.sum()))
        return volume.with_step(x, shifted_affine(volume.affine, [b[0] for b in box]), self.entry(**state))

    @classmethod
    def inverse(cls, volume: Volume, entry: HistoryEntry) -> Volume:
        """Paste back into the input grid: background outside the box (exactly the ``crop`` step's inverse)."""
        from medseg.transforms.croppad import Crop

        return Crop.inverse(volume, entry)


def _stage_steps(items: list[Any]) -> list[Step]:
    """Build the stage's own pre-processing steps (validated like the pipeline's, errors with their path)."""
    from medseg.pipeline.config import build_steps

    if not isinstance(items, list):
        raise ConfigError(f"preprocess: must be a list of steps, got {type(items).__name__}")
    items = [{s.name: s.options()} if isinstance(s, Step) else s for s in items]
    try:
        return build_steps("crop_by_model", "preprocess", items)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("crop_by_model: ", "")) from exc


def _checkpoint_path(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise ConfigError(f"inference.checkpoints: {path}: no such checkpoint file (relative to {base})")
    return p
