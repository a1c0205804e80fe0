"""Prediction with a pipeline: checkpoints → networks → :class:`Predictor`, and the batch processor.

:class:`PipelineProcessor` is the :class:`medseg.batch.CaseProcessor` that ``medseg predict``
runs: ``load`` reads and pre-processes a case (CPU, may run in a loader thread), ``run``
does the sliding window, inversion to the input grid, argmax and post-processing, ``save``
runs the pipeline's exporters atomically.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.core.volume import Volume
from medseg.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from torch import nn

    from medseg.batch import Case
    from medseg.inference import Predictor
    from medseg.pipeline.pipeline import Pipeline

log = logging.getLogger(__name__)


def load_networks(pipeline: Pipeline, checkpoints: list[Path], device: str = "cpu") -> list[nn.Module]:
    """Networks of ``checkpoints``, each checked against the pipeline's labels and channels.

    Raises:
        CheckpointError: no checkpoint, a missing file, or one trained for other labels/channels.
    """
    from medseg.pipeline.train import with_background
    from medseg.training import load_checkpoint

    if not checkpoints:
        raise CheckpointError(
            f"{pipeline.source or pipeline.spec.name}: no checkpoint; train one with 'medseg train', then list it in "
            "inference.checkpoints or pass --checkpoint"
        )
    nets = []
    for path in checkpoints:
        ckpt = load_checkpoint(path, labels=with_background(pipeline.labels), channels=pipeline.spec.input.channels)
        nets.append(ckpt.build_network(device))
    return nets


def mirror_axes(pipeline: Pipeline, tta: bool | None) -> tuple[int, ...]:
    """Mirroring axes: the pipeline's, or all spatial axes with ``tta=True``, none with ``tta=False``."""
    configured = tuple(pipeline.spec.inference.mirror_axes)
    if tta is None:
        return configured
    if not tta:
        return ()
    dims = int(pipeline.spec.network.options.get("spatial_dims", 3))
    return configured or tuple(range(dims))


def make_predictor(
    pipeline: Pipeline, checkpoints: list[Path], *, device: str = "auto", tta: bool | None = None
) -> Predictor:
    """A :class:`medseg.inference.Predictor` for the pipeline's inference settings."""
    from medseg.inference import Predictor
    from medseg.inference.predictor import resolve_device

    inf = pipeline.spec.inference
    if inf.patch_size is None:
        raise ConfigError(f"{pipeline.source or pipeline.spec.name}: inference.patch_size is required to predict")
    dev = resolve_device(device if device != "auto" else inf.device)
    nets = load_networks(pipeline, checkpoints, str(dev))
    return Predictor(
        nets,
        preprocess=pipeline.preprocess,
        patch_size=inf.patch_size,
        overlap=inf.overlap,
        blend=inf.blend,
        batch_size=inf.batch_size,
        mirror_axes=mirror_axes(pipeline, tta),
        device=dev,
        amp=inf.amp,
        postprocess=pipeline.postprocess,
        spatial_dims=int(pipeline.spec.network.options.get("spatial_dims", 3)),
    )


def hash_files(paths: list[Path]) -> list[str]:
    """SHA-256 of each file (streamed)."""
    out = []
    for p in paths:
        if not Path(p).is_file():
            raise CheckpointError(f"{p}: no such checkpoint file")
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        out.append(h.hexdigest())
    return out


@dataclass
class PipelineProcessor:
    """Runs a pipeline on batch cases (see :class:`medseg.batch.CaseProcessor`).

    Attributes:
        pipeline: the validated pipeline.
        checkpoints: model files (several = fold ensemble).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        tta: mirroring override (None: the pipeline's setting).
        series_uid: DICOM series to read when an input folder holds several.
        exporters: exporter specs; default the pipeline's ``export`` list, or NIfTI.
    """

    pipeline: Pipeline
    checkpoints: list[Path]
    device: str = "auto"
    tta: bool | None = None
    series_uid: str | None = None
    exporters: list[Any] | None = None

    def __post_init__(self) -> None:
        self._predictor: Predictor | None = None
        self._weights = hash_files(self.checkpoints) if self.checkpoints else []

    def __getstate__(self) -> dict[str, Any]:  # Dask pickles the processor: rebuild the networks there
        state = dict(self.__dict__)
        state["_predictor"] = None
        return state

    @property
    def predictor(self) -> Predictor:
        if self._predictor is None:
            self._predictor = make_predictor(self.pipeline, self.checkpoints, device=self.device, tta=self.tta)
        return self._predictor

    def export_specs(self) -> list[Any]:
        return self.exporters if self.exporters is not None else (self.pipeline.exporters or ["nifti"])

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(self.pipeline.fingerprint().encode())
        for w in self._weights:
            h.update(w.encode())
        h.update(repr((mirror_axes(self.pipeline, self.tta), [_spec_key(e) for e in self.export_specs()])).encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline.spec.name,
            "pipeline_file": str(self.pipeline.source) if self.pipeline.source else None,
            "pipeline_config": self.pipeline.to_dict(),
            "checkpoints": [{"path": str(p), "sha256": w} for p, w in zip(self.checkpoints, self._weights)],
            "device": str(self.predictor.device),
            "mirror_axes": list(mirror_axes(self.pipeline, self.tta)),
        }

    def load(self, case: Case) -> tuple[Volume, Volume]:
        from medseg.io import read_channels

        image = read_channels(list(case.images), series_uid=case.extra.get("series_uid") or self.series_uid)
        check_modality(self.pipeline, image)
        channels = self.pipeline.spec.input.channels
        if image.n_channels != len(channels):
            raise ConfigError(
                f"{case.case_id}: {image.n_channels} input channel(s) but the pipeline expects {len(channels)} "
                f"({', '.join(channels)}); give one image per channel (_0000, _0001, ...)"
            )
        return image, self.predictor.run_preprocess(image)

    def run(self, loaded: tuple[Volume, Volume]) -> tuple[Volume, Volume]:
        image, pre = loaded
        return image, self.predictor.predict_preprocessed(image, pre)

    def save(self, case: Case, result: tuple[Volume, Volume], out_dir: Path) -> dict[str, Path]:
        from medseg.export import export_all

        image, label = result
        paths = export_all(label, out_dir, case.case_id, self.export_specs(), image=image, labels=self.pipeline.labels)
        return {p.name.removeprefix(case.case_id).lstrip("._-") or p.name: p for p in paths}


def _spec_key(spec: Any) -> Any:
    if isinstance(spec, (str, dict)):
        return spec
    return repr(spec)


def check_modality(pipeline: Pipeline, image: Volume) -> None:
    """Refuse a DICOM series whose Modality differs from the pipeline's ``input.modality``."""
    wanted = pipeline.spec.input.modality.upper()
    got = str(image.meta.get("modality") or "").upper()
    if wanted not in ("", "ANY") and got and got != wanted:
        raise ConfigError(
            f"{image.meta.get('source')}: DICOM modality is {got} but pipeline '{pipeline.spec.name}' expects {wanted}; "
            "choose the right series or pipeline"
        )
