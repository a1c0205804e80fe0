"""The pipeline file schema, validated as a whole before any work.

A pipeline file (YAML) names its sections in order::

    name: brain-mask-mr
    input: {modality: MR, channels: [T1], labels: {1: brain}}
    preprocess:
      - reorient: {axcodes: RAS}
      - resample: {spacing: [3.0, 3.0, 3.0]}
      - zscore: {}
    network: {name: unet, options: {n_stages: 4}}
    training: {max_epochs: 20, patch_size: [64, 64, 64]}
    inference: {patch_size: [64, 64, 64], overlap: 0.5}
    postprocess:
      - keep_largest_component: {}
    export:
      - nifti: {}

Sections are pydantic models with ``extra="forbid"``; steps and exporters are looked
up in their registries and their options validated against the step dataclasses.
Every problem is reported as ``FILE: path.in.file: what is wrong (did you mean ...)``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from medseg.errors import ConfigError, did_you_mean

if typing.TYPE_CHECKING:
    from medseg.core.steps import Step

PositiveInt = Annotated[int, Field(gt=0)]


class Section(BaseModel):
    """Base of every section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(Section):
    """What the pipeline reads.

    Attributes:
        modality: e.g. ``"CT"``, ``"MR"`` (checked against DICOM Modality when known).
        channels: one name per input channel (``_0000``, ``_0001``, ... in nnU-Net layout).
        labels: label value → name; 0 is background and is implied. In the file a value may
            also list the RTSTRUCT/SEG names that mean it, name first:
            ``{1: [liver, Liver, "LIVER*"]}`` (see :mod:`medseg.io.roi_names`); ``labels`` keeps
            the first name, ``label_synonyms`` the whole lists.
        spacing_tolerance: DICOM inputs: largest deviation of a slice gap from the series'
            median gap, as a fraction (0.05 = 5 %); larger gaps (missing slices) fail the case.
    """

    modality: str = "any"
    channels: list[str] = Field(default_factory=lambda: ["image"], min_length=1)
    labels: dict[int, str] = Field(default_factory=lambda: {1: "foreground"}, min_length=1)
    spacing_tolerance: float = Field(0.05, gt=0.0)
    label_synonyms: dict[int, list[str]] = Field(default_factory=dict, exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _keep_synonyms(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "label_synonyms" in data:
                raise ValueError(
                    "unknown key 'label_synonyms': list synonyms in labels, e.g. labels: {1: [liver, Liver]}"
                )
            if isinstance(data.get("labels"), dict):
                data = {**data, "label_synonyms": data["labels"]}
        return data

    @field_validator("labels", mode="before")
    @classmethod
    def _first_names(cls, v: Any) -> Any:
        from medseg.io.roi_names import parse_label_names

        return {k: names[0] for k, names in parse_label_names(v).items()}

    @field_validator("label_synonyms", mode="before")
    @classmethod
    def _synonym_lists(cls, v: Any) -> Any:
        from medseg.io.roi_names import parse_label_names

        try:
            return parse_label_names(v)
        except ValueError:
            return {}  # the same value is reported once, under 'labels'

    @model_serializer(mode="wrap")
    def _dump_synonyms(self, handler: Any) -> Any:
        data = handler(self)
        if any(len(names) > 1 for names in self.label_synonyms.values()) and "labels" in data:
            data["labels"] = {
                k: self.label_synonyms[int(k)] if len(self.label_synonyms.get(int(k), ())) > 1 else name
                for k, name in data["labels"].items()
            }
        return data

    @field_validator("labels")
    @classmethod
    def _labels_positive(cls, v: dict[int, str]) -> dict[int, str]:
        bad = [k for k in v if k <= 0]
        if bad:
            raise ValueError(f"label values must be ≥ 1 (0 is background), got {bad}")
        return v


class NetworkSpec(Section):
    """Which network to build: a registered name plus its options.

    Attributes:
        name: a registered network (``unet``, ``conv_block_classifier``, ``monai.UNet``, ...).
        options: the network's keyword options (``in_channels``/``out_channels`` are filled in from
            ``input.channels`` and ``input.labels``).
    """

    name: str = "unet"
    options: dict[str, Any] = Field(default_factory=dict)


class InferenceSpec(Section):
    """Sliding-window inference options (see :func:`medseg.inference.sliding_window_inference`).

    Attributes:
        patch_size: window in voxels, one per axis of the network (required to predict; usually the
            training patch).
        overlap: fraction of a window shared with its neighbour (0 ≤ overlap < 1).
        blend: ``"gaussian"`` (weights fall off towards the window border) or ``"constant"``.
        batch_size: windows per forward pass.
        mirror_axes: spatial axes mirrored for test-time augmentation (e.g. ``[0, 1, 2]``; ``[]``: none).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        precision: the network's arithmetic: ``"auto"`` (bfloat16 where the CPU or GPU computes it
            natively — AVX-512 BF16/AMX CPUs, recent GPUs — else float32), ``"float32"``, ``"bfloat16"``
            or ``"float16"`` (GPUs). Stitching, resampling and argmax stay float32.
        checkpoints: checkpoint files (paths relative to the pipeline file); several = fold ensemble.
    """

    patch_size: list[PositiveInt] | None = None
    overlap: float = Field(0.5, ge=0.0, lt=1.0)
    blend: Literal["gaussian", "constant"] = "gaussian"
    batch_size: PositiveInt = 4
    mirror_axes: list[Annotated[int, Field(ge=0, le=2)]] = Field(default_factory=list)
    device: str = "auto"
    precision: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    checkpoints: list[str] = Field(default_factory=list)


class PipelineSpec(Section):
    """A whole pipeline file (the steps are kept as validated ``(name, options)`` pairs)."""

    name: str = "pipeline"
    description: str = ""
    input: InputSpec = Field(default_factory=InputSpec)
    preprocess: list[Any] = Field(default_factory=list)
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    training: dict[str, Any] = Field(default_factory=dict)
    inference: InferenceSpec = Field(default_factory=InferenceSpec)
    postprocess: list[Any] = Field(default_factory=list)
    export: list[Any] = Field(default_factory=list)


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A config written by an earlier medseg (a checkpoint's, or an old file) in today's keys.

    ``inference.amp`` became ``inference.precision`` (true → ``auto``, false → ``float32``);
    ``training.amp: true`` meant "on CUDA only", which is today's default (``null``).
    """
    out = dict(data)
    inference = out.get("inference")
    if isinstance(inference, dict) and "amp" in inference and "precision" not in inference:
        inference = dict(inference)
        inference["precision"] = "auto" if inference.pop("amp") else "float32"
        out["inference"] = inference
        training = out.get("training")
        if isinstance(training, dict) and training.get("amp") is True:  # written with inference.amp: the old meaning
            out["training"] = {**training, "amp": None}
    return out


class Problems:
    """Collects every mistake of a pipeline so they are reported together, one line each."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, problem: str | ConfigError) -> None:
        """Record a message, or every line of a :class:`ConfigError` (which may already hold several)."""
        text = str(problem)
        if isinstance(problem, ConfigError) and "\n" in text:
            text = text.split("\n", 1)[1]  # drop the "N problems:" head of an earlier collection
        self.lines.extend(line.strip() for line in text.splitlines() if line.strip())

    @contextmanager
    def collect(self) -> Iterator[None]:
        """Record a :class:`ConfigError` raised inside the block instead of letting it stop validation."""
        try:
            yield
        except ConfigError as exc:
            self.add(exc)

    def error(self) -> ConfigError | None:
        """One :class:`ConfigError`: the problem itself, or ``N problems:`` and one line each (None if none)."""
        unique = list(dict.fromkeys(self.lines))
        if len(unique) == 1:
            return ConfigError(unique[0])
        if unique:
            return ConfigError(f"{len(unique)} problems:\n" + "\n".join(f"  {line}" for line in unique))
        return None

    def raise_if_any(self) -> None:
        """Raise :meth:`error` when a problem was recorded."""
        error = self.error()
        if error is not None:
            raise error


SECTION_MODELS: dict[str, type[BaseModel]] = {
    "input": InputSpec,
    "network": NetworkSpec,
    "inference": InferenceSpec,
}


def format_loc(loc: tuple[Any, ...]) -> str:
    """``("preprocess", 2, "resample", "spacing")`` → ``"preprocess[2].resample.spacing"``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (sub)model found by walking ``loc`` from ``model``."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = SECTION_MODELS.get(part, field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [n for n, f in current.model_fields.items() if not f.exclude]  # excluded: derived, not written
    return []


def pydantic_errors(
    where: str, exc: ValidationError, model: type[BaseModel] | None = None, prefix: tuple[Any, ...] = ()
) -> ConfigError:
    """Turn a pydantic ValidationError into one ConfigError with paths and did-you-mean."""
    lines = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        path = format_loc(loc)
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            allowed = _allowed_keys(model, tuple(err["loc"])[:-1]) if model is not None else []
            lines.append(
                f"{where}: {format_loc(loc[:-1]) or 'top level'}: unknown key '{key}'{did_you_mean(key, allowed)}"
            )
        else:
            got = err.get("input")
            got_text = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
            lines.append(f"{where}: {path}: {err['msg']}{got_text}")
    problems = Problems()
    for line in lines:
        problems.add(line)
    return problems.error() or ConfigError(f"{where}: invalid pipeline")


def validate_dataclass(where: str, path: str, cls: type, options: dict[str, Any]) -> Any:
    """Build dataclass ``cls`` from ``options`` with type checking; every bad option is reported, each
    with its ``path`` in the file."""
    from medseg.core.registry import option_names

    allowed = option_names(cls) or []
    problems = Problems()
    for key in options:
        if key not in allowed:
            problems.add(f"{where}: {path}: unknown option '{key}'{did_you_mean(key, allowed)}")
    options = {k: v for k, v in options.items() if k in allowed}
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        checked = {}
        for key, value in options.items():
            try:
                checked[key] = _adapter(hints[key]).validate_python(value) if key in hints else value
            except ValidationError as exc:
                first = exc.errors()[0]["msg"]
                problems.add(f"{where}: {path}.{key}: {first} (got {value!r}; expected {_type_name(hints[key])})")
        options = checked
    problems.raise_if_any()
    try:
        return cls(**options)
    except ValidationError as exc:
        raise pydantic_errors(where, exc, prefix=tuple(_split(path))) from exc
    except (ConfigError, ValueError, TypeError) as exc:
        msg = str(exc)
        if isinstance(exc, ConfigError) and msg.startswith(f"{where}: {path}."):
            raise  # already names the option
        msg = msg.split(": ", 1)[-1] if isinstance(exc, ConfigError) and msg.startswith("step ") else msg
        raise ConfigError(f"{where}: {path}: {msg}") from exc


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


@functools.lru_cache(maxsize=256)
def _adapter(tp: Any) -> TypeAdapter[Any]:
    """A lenient-for-unknown-types adapter (numpy arrays, Volumes pass through by isinstance)."""
    return TypeAdapter(tp, config=ConfigDict(arbitrary_types_allowed=True))


def _split(path: str) -> list[Any]:
    parts: list[Any] = []
    for chunk in path.replace("]", "").split("."):
        name, *idx = chunk.split("[")
        parts.append(name)
        parts.extend(int(i) for i in idx)
    return parts


def parse_step_list(where: str, section: str, items: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """``[{"resample": {...}}, "zscore", ...]`` → ``[("resample", {...}), ("zscore", {})]``."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append((item, {}))
            continue
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(
                f"{where}: {section}[{i}]: each step is one mapping 'name: {{options}}' (e.g. '- resample: "
                f"{{spacing: [1.5, 1.5, 1.5]}}'), got {item!r}"
            )
        ((name, options),) = item.items()
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise ConfigError(f"{where}: {section}[{i}].{name}: options must be a mapping, got {options!r}")
        out.append((str(name), dict(options)))
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a pipeline file with :func:`parse_yaml` (safe, bounded); syntax errors name the line and column."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: pipeline file not found")
    data = parse_yaml(p.read_text(encoding="utf-8", errors="replace"), p)
    if data is None:
        raise ConfigError(f"{p}: the pipeline file is empty")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: a pipeline file is a mapping of sections (name, input, preprocess, ...), got {type(data).__name__}"
        )
    return data


def parse_yaml(text: str, source: str | Path) -> Any:
    """Parse YAML ``text`` as ``yaml.safe_load`` does (no tags that build objects), within bounds.

    Aliases (``*name``) let a few hundred bytes stand for gigabytes ("billion laughs"), so the
    document is composed first, without expanding them, and refused when it uses more than
    :data:`medseg.core.limits.MAX_YAML_ALIASES` aliases or expands to more than
    :data:`medseg.core.limits.MAX_YAML_NODES` nodes; only then is it built.

    Args:
        text: the YAML document.
        source: the file it came from (named in errors).

    Raises:
        ConfigError: invalid YAML (with line and column), too many aliases or nodes, recursive aliases.
    """
    import yaml

    from medseg.core import limits

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        aliases, nodes = _yaml_size(node, source)
        if aliases > limits.MAX_YAML_ALIASES or nodes > limits.MAX_YAML_NODES:
            raise ConfigError(
                f"{source}: the YAML uses {aliases} aliases expanding to {nodes} nodes, more than the "
                f"{limits.MAX_YAML_ALIASES} aliases / {limits.MAX_YAML_NODES} nodes allowed; write the values "
                "out instead of repeating anchors (or raise MEDSEG_MAX_YAML_ALIASES / MEDSEG_MAX_YAML_NODES)"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        hint = " (YAML does not allow tabs for indentation; use spaces)" if "\\t" in problem or "\t" in problem else ""
        raise ConfigError(f"{source}: invalid YAML: {where}{problem}{hint}".replace("\n", " ")) from exc
    finally:
        loader.dispose()


def _yaml_size(root: Any, source: str | Path) -> tuple[int, int]:
    """``(aliases, expanded nodes)`` of a composed YAML document, counted without expanding it.

    An alias is a node reached a second time; each node's expanded size is computed once.
    """
    import yaml

    sizes: dict[int, int] = {}
    seen: set[int] = set()
    aliases = 0
    stack: list[tuple[Any, bool]] = [(root, False)]
    active: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            children = _yaml_children(node)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            continue
        if key in active:
            raise ConfigError(f"{source}: the YAML has a recursive alias (an anchor used inside itself); remove it")
        if key in seen:
            aliases += 1
            continue
        seen.add(key)
        if not isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
            sizes[key] = 1
            continue
        active.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _yaml_children(node))
    return aliases, sizes[id(root)]


def _yaml_children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def build_steps(where: str, section: str, items: list[Any]) -> list[Step]:
    """Validated steps of a ``preprocess``/``postprocess`` list (every problem collected, each with its path)."""
    from medseg.core.steps import STEPS

    problems = Problems()
    steps = []
    for i, (name, options) in enumerate(parse_step_list(where, section, items)):
        path = f"{section}[{i}].{name}"
        if name not in STEPS:
            same_stage = [n for n in STEPS.names() if STEPS.get(n).stage == section]
            problems.add(f"{where}: {section}[{i}]: unknown step '{name}'{did_you_mean(name, same_stage)}")
            continue
        cls = STEPS.get(name)
        if cls.stage != section:
            problems.add(f"{where}: {path}: '{name}' is a {cls.stage} step; move it to the '{cls.stage}' section")
            continue
        with problems.collect():
            steps.append(validate_dataclass(where, path, cls, options))
    problems.raise_if_any()
    return steps
