"""The :class:`Pipeline`: a validated pipeline file, usable from Python and the CLI.

A ``Pipeline`` holds the validated configuration (sections, built steps, exporters,
training options) and nothing else; training and prediction are functions of it
(:mod:`medseg.pipeline.train`, :mod:`medseg.pipeline.predict`), reached from Python through
the thin methods :meth:`Pipeline.train`, :meth:`Pipeline.predictor` and :meth:`Pipeline.predict`.
``Pipeline.from_yaml(path)`` and ``Pipeline(...)`` in code are twins; ``pipeline.to_yaml()``
round-trips.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from medseg.core.steps import Step
from medseg.core.volume import Volume
from medseg.errors import ConfigError, did_you_mean
from medseg.pipeline.config import (
    InferenceSpec,
    InputSpec,
    NetworkSpec,
    PipelineSpec,
    Problems,
    build_steps,
    load_yaml,
    parse_step_list,
    pydantic_errors,
    upgrade,
    validate_dataclass,
)

if TYPE_CHECKING:
    import os

    from medseg.export import Exporter
    from medseg.inference import Predictor
    from medseg.training import Dataset, TrainingConfig, TrainResult


class Pipeline:
    """A whole segmentation pipeline: input, preprocess, network, training, inference, postprocess, export.

    Build it from a file (:meth:`from_yaml`), a mapping (:meth:`from_dict`) or in code::

        >>> from medseg.pipeline import Pipeline
        >>> from medseg.postprocess import KeepLargestComponent
        >>> from medseg.transforms import Clip, Reorient, Resample
        >>> pipeline = Pipeline(
        ...     name="ct-liver",
        ...     input={"modality": "CT", "labels": {1: "liver"}},
        ...     preprocess=[Reorient(), Resample(spacing=(1.5, 1.5, 1.5)), Clip(low=-100, high=200)],
        ...     network={"name": "unet", "options": {"n_stages": 4}},
        ...     inference={"patch_size": [96, 96, 96]},
        ...     postprocess=[KeepLargestComponent()],
        ... )
        >>> pipeline
        Pipeline(name='ct-liver', preprocess=['reorient', 'resample', 'clip'], network='unet')

    Everything is validated on construction, and every mistake is reported at once;
    nothing runs until :meth:`train` or :meth:`predict`.

    Attributes:
        spec: the validated sections.
        preprocess: the pre-processing steps, built.
        postprocess: the post-processing steps, built.
        exporters: the exporters of the ``export`` section, built.
        training_config: the ``training`` section with every default filled in.
        source: the file it was read from, or None.
    """

    def __init__(
        self,
        *,
        name: str = "pipeline",
        description: str = "",
        input: InputSpec | dict[str, Any] | None = None,
        preprocess: Sequence[Step | dict[str, Any] | str] = (),
        network: NetworkSpec | dict[str, Any] | None = None,
        training: TrainingConfig | dict[str, Any] | None = None,
        inference: InferenceSpec | dict[str, Any] | None = None,
        postprocess: Sequence[Step | dict[str, Any] | str] = (),
        export: Sequence[Any] = (),
        source: str | os.PathLike[str] | None = None,
    ) -> None:
        data = {
            "name": name,
            "description": description,
            "input": _plain(input) if input is not None else {},
            "preprocess": [_step_item(s) for s in preprocess],
            "network": _plain(network) if network is not None else {},
            "training": _training_dict(training),
            "inference": _plain(inference) if inference is not None else {},
            "postprocess": [_step_item(s) for s in postprocess],
            "export": [_step_item(s) for s in export],
        }
        self.source = Path(source) if source is not None else None
        where = str(self.source) if self.source else "<pipeline>"
        problems = Problems()
        try:
            self.spec = PipelineSpec.model_validate(data)
        except ValidationError as exc:
            problems.add(pydantic_errors(where, exc, PipelineSpec))
            self.spec = PipelineSpec.model_construct(**_raw_sections(data))
        with problems.collect():
            self.preprocess: list[Step] = build_steps(where, "preprocess", self.spec.preprocess)
            _bind_files(where, self.preprocess, self.source)
        with problems.collect():
            self.postprocess: list[Step] = build_steps(where, "postprocess", self.spec.postprocess)
        with problems.collect():
            self.exporters: list[Exporter] = _build_exporters(where, self.spec.export)
        with problems.collect():
            _check_network(where, self)
        with problems.collect():
            self.training_config: TrainingConfig = _build_training(where, self.spec.training)
        problems.raise_if_any()

    # ---- construction ---------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Pipeline:
        """Read and validate a pipeline file (``yaml.safe_load``; no code, no dotted paths)."""
        return cls.from_dict(load_yaml(path), source=path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | os.PathLike[str] | None = None) -> Pipeline:
        """Validate a mapping with the pipeline file's sections."""
        where = str(source) if source is not None else "<pipeline>"
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: a pipeline is a mapping of sections, got {type(data).__name__}")
        data = upgrade(data)
        allowed = list(PipelineSpec.model_fields)
        problems = Problems()
        for key in data:
            if key not in allowed:
                problems.add(f"{where}: top level: unknown key '{key}'{did_you_mean(str(key), allowed)}")
        kwargs = {k: v for k, v in data.items() if k in allowed}
        for section in ("preprocess", "postprocess", "export"):
            value = kwargs.get(section) or []
            if not isinstance(value, list):
                problems.add(f"{where}: {section}: must be a list of steps, got {type(value).__name__}")
                value = []
            kwargs[section] = value
        if kwargs.get("training") is not None and not isinstance(kwargs["training"], dict):
            problems.add(f"{where}: training: must be a mapping of options, got {type(kwargs['training']).__name__}")
            kwargs["training"] = {}
        try:
            pipeline = cls(**kwargs, source=source)
        except ConfigError as exc:
            problems.add(exc)
        problems.raise_if_any()
        return pipeline

    # ---- serialisation --------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The pipeline as plain data with every default filled in (what ``to_yaml`` writes and
        checkpoints store)."""
        d = self.spec.model_dump(mode="json")
        d["preprocess"] = [{s.name: s.options()} for s in self.preprocess]
        d["training"] = self.training_config.to_dict()
        d["postprocess"] = [{s.name: s.options()} for s in self.postprocess]
        d["export"] = [{e.name: e.options()} for e in self.exporters]
        return d

    def to_yaml(self) -> str:
        """YAML text that :meth:`from_yaml` reads back to an equal pipeline."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def fingerprint(self) -> str:
        """SHA-256 of the canonical pipeline config (without checkpoint paths)."""
        d = self.to_dict()
        d["inference"] = {k: v for k, v in d["inference"].items() if k != "checkpoints"}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        steps = [s.name for s in self.preprocess]
        return f"Pipeline(name={self.spec.name!r}, preprocess={steps}, network={self.spec.network.name!r})"

    # ---- what train and predict read --------------------------------------
    @property
    def labels(self) -> dict[int, str]:
        """Label value → name (background 0 implied)."""
        return dict(self.spec.input.labels)

    @property
    def labels_with_background(self) -> dict[int, str]:
        """``labels`` with ``0: "background"`` added (what checkpoints record)."""
        return {0: "background", **self.labels}

    @property
    def label_synonyms(self) -> dict[int, list[str]]:
        """Label value → the RTSTRUCT/SEG names that mean it, the label's name first (``input.labels`` lists)."""
        synonyms = self.spec.input.label_synonyms
        return {v: list(synonyms.get(v) or [name]) for v, name in self.spec.input.labels.items()}

    @property
    def n_classes(self) -> int:
        """Output channels of the network: background + the highest label value."""
        return max(self.labels) + 1

    @property
    def spatial_dims(self) -> int:
        """2 for slice-wise networks, else 3 (``network.options.spatial_dims``)."""
        return int(self.spec.network.options.get("spatial_dims", 3))

    def checkpoint_paths(self) -> list[Path]:
        """``inference.checkpoints`` resolved relative to the pipeline file."""
        base = self.source.parent if self.source else Path.cwd()
        return [(base / p) if not Path(p).is_absolute() else Path(p) for p in self.spec.inference.checkpoints]

    def apply_preprocess(self, volume: Volume) -> Volume:
        """Run the preprocess steps in order (each appends to ``volume.history``)."""
        for step in self.preprocess:
            volume = step(volume)
        return volume

    # ---- work (functions of the pipeline, reachable from it) -------------
    def train(
        self,
        dataset: Dataset | str | os.PathLike[str],
        out_dir: str | os.PathLike[str],
        *,
        fold: int | None = None,
        n_folds: int = 5,
        **overrides: Any,
    ) -> TrainResult:
        """Train on ``dataset``; see :func:`medseg.pipeline.train.train_pipeline`."""
        from medseg.pipeline.train import train_pipeline

        return train_pipeline(self, dataset, out_dir, fold=fold, n_folds=n_folds, **overrides)

    def predictor(
        self,
        checkpoints: Sequence[str | os.PathLike[str]] | None = None,
        *,
        device: str = "auto",
        tta: bool | None = None,
        precision: str | None = None,
    ) -> Predictor:
        """A :class:`medseg.inference.Predictor` with the networks of ``checkpoints``
        (default: ``inference.checkpoints``); see :func:`medseg.pipeline.predict.make_predictor`."""
        from medseg.pipeline.predict import make_predictor

        paths = [Path(c) for c in checkpoints] if checkpoints else self.checkpoint_paths()
        return make_predictor(self, paths, device=device, tta=tta, precision=precision)

    def predict(
        self,
        inputs: Volume | str | os.PathLike[str] | Sequence[Volume | str | os.PathLike[str]],
        *,
        checkpoints: Sequence[str | os.PathLike[str]] | None = None,
        device: str = "auto",
        tta: bool | None = None,
        precision: str | None = None,
    ) -> Volume | list[Volume]:
        """Segment one input (Volume, image file or DICOM folder) or a list of them.

        Returns label Volumes ``(1, X, Y, Z)`` on each input's ORIGINAL grid (same shape and
        affine), post-processed. For folders of cases with resumable outputs use
        ``medseg predict`` / :func:`medseg.batch.run_batch`.
        """
        predictor = self.predictor(checkpoints, device=device, tta=tta, precision=precision)
        if isinstance(inputs, (Volume, str, Path)):
            return predictor.predict(inputs)
        return list(predictor.predict_many(inputs))


def _plain(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return copy.deepcopy(obj)


def _training_dict(training: Any) -> dict[str, Any]:
    if training is None:
        return {}
    if hasattr(training, "to_dict") and not isinstance(training, dict):
        return {k: v for k, v in training.to_dict().items() if k != "cache_dir"}
    return dict(training)


def _step_item(step: Any) -> Any:
    if isinstance(step, Step) or (hasattr(step, "name") and callable(getattr(step, "options", None))):
        return {step.name: step.options()}
    return step


def _raw_sections(data: dict[str, Any]) -> dict[str, Any]:
    """After a section failed validation: keep the step lists, training options and (if it validates on
    its own) the network section, so they are checked too."""
    try:
        network = NetworkSpec.model_validate(data.get("network") or {})
    except ValidationError:
        network = NetworkSpec()  # its own errors are already reported
    return {
        **{k: list(data.get(k) or []) for k in ("preprocess", "postprocess", "export")},
        "training": data.get("training") or {},
        "network": network,
    }


def _bind_files(where: str, steps: list[Step], source: Path | None) -> None:
    """Steps that run a network (``crop_by_model``) find their files relative to the pipeline file."""
    for i, step in enumerate(steps):
        bind = getattr(step, "bind_base_dir", None)
        if callable(bind):
            try:
                bind(source.parent if source is not None else None)
            except ConfigError as exc:
                raise ConfigError(f"{where}: preprocess[{i}].{step.name}.{exc}") from exc


def _build_exporters(where: str, items: list[Any]) -> list[Exporter]:
    from medseg.export import EXPORTERS, exporter_name

    problems = Problems()
    out = []
    for i, (name, options) in enumerate(parse_step_list(where, "export", items)):
        canonical = exporter_name(name)
        if canonical is None:
            problems.add(f"{where}: export[{i}]: unknown exporter '{name}'{did_you_mean(name, EXPORTERS.names())}")
            continue
        with problems.collect():
            out.append(validate_dataclass(where, f"export[{i}].{name}", EXPORTERS.get(canonical), options))
    problems.raise_if_any()
    return out


def _check_network(where: str, pipeline: Pipeline) -> None:
    from medseg.networks import list_networks
    from medseg.pipeline import weights

    spec = pipeline.spec.network
    names = list_networks()
    if spec.name not in names:
        raise ConfigError(f"{where}: network.name: unknown network '{spec.name}'{did_you_mean(spec.name, names)}")
    if weights.carries_weights(spec.name):  # a file with its weights: options and files are checked now
        try:
            input_spec = pipeline.spec.input
            weights.check_network(spec, weights.base_dir(pipeline), dict(input_spec.labels), list(input_spec.channels))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc


def _build_training(where: str, options: dict[str, Any]) -> TrainingConfig:
    from medseg.training import TrainingConfig

    config: TrainingConfig = validate_dataclass(where, "training", TrainingConfig, options)
    return config
