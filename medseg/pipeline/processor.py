"""The batch processor of a pipeline: what ``medseg predict`` runs for every case.

:class:`PipelineProcessor` is the :class:`medseg.batch.CaseProcessor` of a pipeline: ``load``
reads and pre-processes a case (CPU, may run in a loader thread), ``run`` does the sliding
window, the quality-control measurements on the network grid, inversion to the input grid, argmax
and post-processing, ``save`` runs the exporters atomically; ``quality`` gives the case's QC record
(:mod:`medseg.qc`), which the batch engine puts in the report and the provenance.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.core.volume import Volume
from medseg.errors import CheckpointError, ConfigError, InputWarning
from medseg.pipeline.predict import make_predictor, mirror_axes

if TYPE_CHECKING:
    from medseg.batch import Case
    from medseg.export import Exporter
    from medseg.inference import Predictor
    from medseg.pipeline.pipeline import Pipeline


@dataclass
class PipelineProcessor:
    """Runs a pipeline on batch cases (see :class:`medseg.batch.CaseProcessor`).

    Attributes:
        pipeline: the validated pipeline.
        checkpoints: model files (several = fold ensemble).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        tta: mirroring override (None: the pipeline's setting).
        series_uid: DICOM series to read when an input folder holds several.
        spacing_tolerance: DICOM slice-gap tolerance (None: the pipeline's ``input.spacing_tolerance``).
        precision: the network's precision (None: the pipeline's ``inference.precision``).
        exporters: exporters to run instead of the pipeline's ``export`` list (names, mappings or
            instances; validated here, before any case runs); default the pipeline's, or NIfTI.
    """

    pipeline: Pipeline
    checkpoints: list[Path]
    device: str = "auto"
    tta: bool | None = None
    series_uid: str | None = None
    exporters: list[Any] | None = None
    spacing_tolerance: float | None = None
    precision: str | None = None

    def __post_init__(self) -> None:
        from medseg.batch import hash_file
        from medseg.export import build_exporters

        self._predictor: Predictor | None = None
        self._summary: dict[str, Any] | None = None
        for p in self.checkpoints:
            if not Path(p).is_file():
                raise CheckpointError(f"{p}: no such checkpoint file")
        self._weights = [hash_file(Path(p)) for p in self.checkpoints]
        from medseg.pipeline.weights import weight_files

        self._carried = {str(p): hash_file(p) for p in weight_files(self.pipeline)}  # TorchScript/ONNX files
        specs = self.exporters if self.exporters is not None else (self.pipeline.exporters or ["nifti"])
        self._exporters: list[Exporter] = build_exporters(specs)

    def __getstate__(self) -> dict[str, Any]:  # Dask pickles the processor: rebuild the networks there
        state = dict(self.__dict__)
        state["_predictor"] = None
        return state

    @property
    def predictor(self) -> Predictor:
        """The networks, loaded on first use (so a Dask worker loads them once)."""
        if self._predictor is None:
            self._predictor = make_predictor(
                self.pipeline, self.checkpoints, device=self.device, tta=self.tta, precision=self.precision
            )
        return self._predictor

    @property
    def training_summary(self) -> dict[str, Any]:
        """The training summary the (first) checkpoint carries, ``{}`` when none (older checkpoints, networks
        that carry their own weights). With a fold ensemble the first fold's stands for all."""
        if self._summary is None:
            from medseg.training import load_checkpoint

            self._summary = dict(load_checkpoint(self.checkpoints[0]).training_summary) if self.checkpoints else {}
        return self._summary

    def export_specs(self) -> list[Exporter]:
        """The exporters every case runs, built and validated."""
        return self._exporters

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(self.pipeline.fingerprint().encode())
        for w in [*self._weights, *self._carried.values()]:
            h.update(w.encode())
        exporters = [(e.name, sorted(e.options().items())) for e in self._exporters]
        h.update(repr((mirror_axes(self.pipeline, self.tta), exporters, self.resolved_precision())).encode())
        return h.hexdigest()

    def resolved_precision(self) -> str:
        """The precision the network will run in here (bfloat16 on one machine may be float32 on another,
        so it is part of the fingerprint: a batch resumed elsewhere re-runs its cases)."""
        from medseg.core.device import resolve_device
        from medseg.core.precision import choose_precision

        inference = self.pipeline.spec.inference
        device = resolve_device(self.device if self.device != "auto" else inference.device)
        return choose_precision(self.precision or inference.precision, device).name

    def describe(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline.spec.name,
            "pipeline_file": str(self.pipeline.source) if self.pipeline.source else None,
            "pipeline_config": self.pipeline.to_dict(),
            "checkpoints": [{"path": str(p), "sha256": w} for p, w in zip(self.checkpoints, self._weights)],
            "network_files": [{"path": p, "sha256": w} for p, w in self._carried.items()],
            "device": str(self.predictor.device),
            "mirror_axes": list(mirror_axes(self.pipeline, self.tta)),
            "precision": self.predictor.precision.reason,
            "labels": {str(k): v for k, v in self.pipeline.labels.items()},
        }

    def load(self, case: Case) -> tuple[Volume, Volume]:
        from medseg.io import read_channels

        tolerance = self.spacing_tolerance or self.pipeline.spec.input.spacing_tolerance
        image = read_channels(
            list(case.images),
            series_uid=case.extra.get("series_uid") or self.series_uid,
            spacing_tolerance=tolerance,
        )
        check_modality(self.pipeline, image)
        warn_if_constant(case.case_id, image)
        channels = self.pipeline.spec.input.channels
        if image.n_channels != len(channels) and image.meta.get("colour") == "RGB":
            raise ConfigError(
                f"{case.case_id}: is an RGB colour image (3 channels) but the pipeline expects {len(channels)} "
                f"channel(s) ({', '.join(channels)}); convert it to greyscale first (e.g. ImageMagick's "
                "'convert IN -colorspace Gray OUT', or PIL's Image.convert('L')), or declare 3 channels in input.channels"
            )
        if image.n_channels != len(channels):
            raise ConfigError(
                f"{case.case_id}: {image.n_channels} input channel(s) but the pipeline expects {len(channels)} "
                f"({', '.join(channels)}); give one image per channel (_0000, _0001, ...)"
            )
        return image, self.predictor.run_preprocess(image)

    def run(self, loaded: tuple[Volume, Volume]) -> tuple[Volume, Volume, dict[str, Any]]:
        """Predict a loaded case; returns the image, the label map and the case's QC record."""
        from medseg.qc import assess, input_description

        image, pre = loaded
        measured: dict[str, Any] = {}
        label = self.predictor.predict_preprocessed(image, pre, measurements=measured)
        source = input_description(image.meta, image.spacing, image.spatial_shape, image.orientation)
        assessment = assess(
            measured,
            source,
            self.training_summary,
            labels=self.pipeline.labels,
            channels=list(self.pipeline.spec.input.channels),
        )
        record = {
            **assessment.to_dict(),
            "uncertainty": measured.get("uncertainty", {}),  # per label: entropy, margin, max_softmax (means)
            "fold_uncertainty": measured.get("fold_uncertainty", {}),  # the same per fold, averaged (ensembles)
            "agreement": measured.get("agreement", {}),  # per label: Dice between mirrored passes / folds
            "seconds": round(float(measured.get("seconds", 0.0)), 4),
        }
        return image, label, record

    def quality(self, result: tuple[Volume, Volume, dict[str, Any]]) -> dict[str, Any]:
        """The QC record of a :meth:`run` result (``qc_score``, ``qc_flags``, ``notes``, ``signals``, ``uncertainty``,
        ``fold_uncertainty``, ``agreement``, ``seconds``)."""
        return result[2]

    def save(self, case: Case, result: tuple[Volume, Volume, dict[str, Any]], out_dir: Path) -> dict[str, Path]:
        from medseg.export import export_all

        image, label = result[0], result[1]
        paths = export_all(label, out_dir, case.case_id, self._exporters, image=image, labels=self.pipeline.labels)
        return {p.name.removeprefix(case.case_id).lstrip("._-") or p.name: p for p in paths}


def warn_if_constant(case_id: str, image: Volume) -> None:
    """Warn when a channel holds one value everywhere (blank export, failed conversion): the case still
    runs, but its prediction means nothing, and the warning goes to the console and the report."""
    import numpy as np

    for c, channel in enumerate(image.numpy()):
        lo, hi = float(np.min(channel)), float(np.max(channel))
        if lo == hi:
            which = f"channel {c}" if image.n_channels > 1 else "the image"
            warnings.warn(
                f"{case_id}: {which} is constant (every voxel = {lo:g}); the prediction is meaningless — "
                "check the input file",
                InputWarning,
                stacklevel=2,
            )


def check_modality(pipeline: Pipeline, image: Volume) -> None:
    """Refuse a DICOM series whose Modality differs from the pipeline's ``input.modality``."""
    wanted = pipeline.spec.input.modality.upper()
    got = str(image.meta.get("modality") or "").upper()
    if wanted not in ("", "ANY") and got and got != wanted:
        raise ConfigError(
            f"{image.meta.get('source')}: DICOM modality is {got} but pipeline '{pipeline.spec.name}' expects {wanted}; "
            "choose the right series or pipeline"
        )
