"""The :class:`Pipeline`: a validated pipeline file, usable from Python and the CLI.

Modelled on MIScnn's pipeline object: one object knows how to pre-process, which
network to build, how to train it, how to predict and post-process, and what to
export. ``Pipeline.from_yaml(path)`` and ``Pipeline(...)`` in code are twins;
``pipeline.to_yaml()`` round-trips.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from medseg.core.steps import STEPS, Step
from medseg.core.volume import Volume
from medseg.errors import ConfigError
from medseg.pipeline.config import (
    InferenceSpec,
    InputSpec,
    NetworkSpec,
    PipelineSpec,
    load_yaml,
    parse_step_list,
    pydantic_errors,
    validate_dataclass,
)

#: Modules whose import registers steps, networks and exporters.
_REGISTERING_MODULES = ("medseg.transforms", "medseg.postprocess", "medseg.networks", "medseg.export")


def load_registries() -> None:
    """Import the modules that register steps/networks/exporters, and entry-point steps."""
    from medseg.core.steps import load_entry_point_steps

    for name in _REGISTERING_MODULES:
        importlib.import_module(name)
    load_entry_point_steps()


class Pipeline:
    """A whole segmentation pipeline: input, preprocess, network, training, inference, postprocess, export.

    Build it from a file (:meth:`from_yaml`), a mapping (:meth:`from_dict`) or in code::

        Pipeline(
            name="ct-liver",
            input={"modality": "CT", "labels": {1: "liver"}},
            preprocess=[Reorient(), Resample(spacing=(1.5, 1.5, 1.5)), Clip(lower=-100, upper=200)],
            network={"name": "unet", "options": {"n_stages": 4}},
            inference={"patch_size": [96, 96, 96]},
            postprocess=[KeepLargestComponent()],
        )

    Everything is validated on construction; nothing runs until :meth:`train` or :meth:`predict`.
    """

    def __init__(
        self,
        *,
        name: str = "pipeline",
        description: str = "",
        input: InputSpec | dict[str, Any] | None = None,
        preprocess: Sequence[Step | dict[str, Any] | str] = (),
        network: NetworkSpec | dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
        inference: InferenceSpec | dict[str, Any] | None = None,
        postprocess: Sequence[Step | dict[str, Any] | str] = (),
        export: Sequence[Any] = (),
        source: str | Path | None = None,
    ) -> None:
        data = {
            "name": name,
            "description": description,
            "input": _plain(input) if input is not None else {},
            "preprocess": [_step_item(s) for s in preprocess],
            "network": _plain(network) if network is not None else {},
            "training": dict(training or {}),
            "inference": _plain(inference) if inference is not None else {},
            "postprocess": [_step_item(s) for s in postprocess],
            "export": [_step_item(s) for s in export],
        }
        self.source = Path(source) if source is not None else None
        where = str(self.source) if self.source else "<pipeline>"
        load_registries()
        try:
            self.spec = PipelineSpec.model_validate(data)
        except ValidationError as exc:
            raise pydantic_errors(where, exc, PipelineSpec) from exc
        self.preprocess: list[Step] = _build_steps(where, "preprocess", self.spec.preprocess)
        self.postprocess: list[Step] = _build_steps(where, "postprocess", self.spec.postprocess)
        self.exporters: list[Any] = _build_exporters(where, self.spec.export)
        _check_network(where, self.spec.network)
        self.training_config = _build_training(where, self.spec.training)

    # ---- construction ---------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> Pipeline:
        """Read and validate a pipeline file (``yaml.safe_load``; no code, no dotted paths)."""
        return cls.from_dict(load_yaml(path), source=path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | Path | None = None) -> Pipeline:
        """Validate a mapping with the pipeline file's sections."""
        where = str(source) if source is not None else "<pipeline>"
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: a pipeline is a mapping of sections, got {type(data).__name__}")
        allowed = list(PipelineSpec.model_fields)
        for key in data:
            if key not in allowed:
                from medseg.errors import did_you_mean

                raise ConfigError(f"{where}: top level: unknown key '{key}'{did_you_mean(str(key), allowed)}")
        kwargs = dict(data)
        for section in ("preprocess", "postprocess", "export"):
            value = kwargs.get(section) or []
            if not isinstance(value, list):
                raise ConfigError(f"{where}: {section}: must be a list of steps, got {type(value).__name__}")
            kwargs[section] = value
        return cls(**kwargs, source=source)

    # ---- serialisation --------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The pipeline as plain data (what ``to_yaml`` writes and checkpoints store)."""
        d = self.spec.model_dump(mode="json")
        d["preprocess"] = [{s.name: s.options()} for s in self.preprocess]
        d["postprocess"] = [{s.name: s.options()} for s in self.postprocess]
        d["export"] = [_exporter_item(e) for e in self.exporters]
        return d

    def to_yaml(self) -> str:
        """YAML text that :meth:`from_yaml` reads back to an equal pipeline."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

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

    # ---- helpers used by train/predict ---------------------------------------
    @property
    def labels(self) -> dict[int, str]:
        """Label value → name (background 0 implied)."""
        return dict(self.spec.input.labels)

    @property
    def label_synonyms(self) -> dict[int, list[str]]:
        """Label value → the RTSTRUCT/SEG names that mean it, the label's name first (``input.labels`` lists)."""
        synonyms = self.spec.input.label_synonyms
        return {v: list(synonyms.get(v) or [name]) for v, name in self.spec.input.labels.items()}

    @property
    def n_classes(self) -> int:
        """Output channels of the network: background + the highest label value."""
        return max(self.labels) + 1

    def checkpoint_paths(self) -> list[Path]:
        """``inference.checkpoints`` resolved relative to the pipeline file."""
        base = self.source.parent if self.source else Path.cwd()
        return [(base / p) if not Path(p).is_absolute() else Path(p) for p in self.spec.inference.checkpoints]

    def apply_preprocess(self, volume: Volume) -> Volume:
        """Run the preprocess steps in order (each appends to ``volume.history``)."""
        for step in self.preprocess:
            volume = step(volume)
        return volume

    # ---- work ---------------------------------------------------------------
    def train(
        self, dataset: Any, out_dir: str | Path, *, fold: int | None = None, n_folds: int = 5, **overrides: Any
    ) -> Any:
        """Train on ``dataset`` (nnU-Net folder, CSV manifest or :class:`medseg.training.Dataset`).

        Returns a :class:`medseg.training.TrainResult`; see :func:`medseg.pipeline.train.train_pipeline`.
        """
        from medseg.pipeline.train import train_pipeline

        return train_pipeline(self, dataset, out_dir, fold=fold, n_folds=n_folds, **overrides)

    def predictor(
        self, checkpoints: Sequence[str | Path] | None = None, *, device: str = "auto", tta: bool | None = None
    ) -> Any:
        """A :class:`medseg.inference.Predictor` with the networks of ``checkpoints``
        (default: ``inference.checkpoints``)."""
        from medseg.pipeline.predict import make_predictor

        paths = [Path(c) for c in checkpoints] if checkpoints else self.checkpoint_paths()
        return make_predictor(self, paths, device=device, tta=tta)

    def predict(
        self,
        inputs: Volume | str | Path | Sequence[Volume | str | Path],
        *,
        checkpoints: Sequence[str | Path] | None = None,
        device: str = "auto",
        tta: bool | None = None,
    ) -> Volume | list[Volume]:
        """Segment one input (Volume, image file or DICOM folder) or a list of them.

        Returns label Volumes ``(1, X, Y, Z)`` on each input's ORIGINAL grid (same shape and
        affine), post-processed. For folders of cases with resumable outputs use
        ``medseg predict`` / :func:`medseg.batch.run_batch`.
        """
        predictor = self.predictor(checkpoints, device=device, tta=tta)
        if isinstance(inputs, (Volume, str, Path)):
            return predictor.predict(inputs)
        return list(predictor.predict_many(inputs))

    def evaluate(
        self, predictions: str | Path, references: str | Path, output: str | Path, *, tolerance_mm: float = 1.0
    ) -> Any:
        """Compare predictions with references per case and label (see ``medseg evaluate``).

        Writes ``output`` (per-case CSV) and a summary JSON beside it; returns
        ``(csv_path, json_path, summary)``.
        """
        from medseg.metrics.report import evaluate_folders, write_report

        rows = evaluate_folders(
            Path(predictions), Path(references), labels=list(self.labels), tolerance_mm=tolerance_mm
        )
        return write_report(rows, Path(output))

    def apply_postprocess(self, label: Volume) -> Volume:
        """Run the postprocess steps on a label map in order."""
        for step in self.postprocess:
            label = step(label)
        return label


def _plain(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return copy.deepcopy(obj)


def _step_item(step: Any) -> Any:
    if isinstance(step, Step):
        return {step.name: step.options()}
    if hasattr(step, "name") and hasattr(step, "options") and callable(step.options):
        return {step.name: step.options()}
    return step


def _exporter_item(exporter: Any) -> dict[str, Any]:
    import dataclasses

    name = getattr(exporter, "name", type(exporter).__name__)
    if dataclasses.is_dataclass(exporter):
        return {name: {f.name: _listify(getattr(exporter, f.name)) for f in dataclasses.fields(exporter) if f.init}}
    return {name: {}}


def _listify(v: Any) -> Any:
    return [_listify(x) for x in v] if isinstance(v, tuple) else v


def _build_steps(where: str, section: str, items: list[Any]) -> list[Step]:
    steps = []
    for i, (name, options) in enumerate(parse_step_list(where, section, items)):
        path = f"{section}[{i}].{name}"
        if name not in STEPS:
            from medseg.errors import did_you_mean

            same_stage = [n for n in STEPS.names() if STEPS.get(n).stage == section]
            raise ConfigError(f"{where}: {section}[{i}]: unknown step '{name}'{did_you_mean(name, same_stage)}")
        cls = STEPS.get(name)
        if cls.stage != section:
            raise ConfigError(f"{where}: {path}: '{name}' is a {cls.stage} step; move it to the '{cls.stage}' section")
        steps.append(validate_dataclass(where, path, cls, options))
    return steps


def _build_exporters(where: str, items: list[Any]) -> list[Any]:
    try:
        from medseg.export import EXPORTERS
    except ImportError:  # export package not installed in this build
        if items:
            raise ConfigError(f"{where}: export: exporters are not available") from None
        return []
    out = []
    for i, (name, options) in enumerate(parse_step_list(where, "export", items)):
        if name not in EXPORTERS:
            from medseg.errors import did_you_mean

            raise ConfigError(f"{where}: export[{i}]: unknown exporter '{name}'{did_you_mean(name, EXPORTERS.names())}")
        out.append(validate_dataclass(where, f"export[{i}].{name}", EXPORTERS.get(name), options))
    return out


def _check_network(where: str, spec: NetworkSpec) -> None:
    from medseg.networks import list_networks

    names = list_networks()
    if spec.name not in names:
        from medseg.errors import did_you_mean

        raise ConfigError(f"{where}: network.name: unknown network '{spec.name}'{did_you_mean(spec.name, names)}")


def _build_training(where: str, options: dict[str, Any]) -> Any:
    from medseg.training import TrainingConfig

    return validate_dataclass(where, "training", TrainingConfig, options)
