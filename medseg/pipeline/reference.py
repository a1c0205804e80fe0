"""The pipeline-file reference, generated from the config classes so it cannot drift from them.

``python -m medseg.pipeline.reference`` prints the Markdown of ``docs/pipeline.md``: every section's
keys with type, default and description (from the ``Attributes:`` docstring of the class that
validates it), then every registered step and exporter with its options. A test checks that the
committed file equals this output and that every key has a description.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Iterator
from typing import Any

#: ``name: text`` lines of an ``Attributes:`` block (continuation lines are indented deeper).
_ITEM = re.compile(r"^(\s*)([A-Za-z_]\w*(?:\s*/\s*[A-Za-z_]\w*)*)(?: \([^)]*\))?: ?(.*)$")


def field_docs(cls: type) -> dict[str, str]:
    """``{name: description}`` from the ``Attributes:`` (or ``Args:``) sections of ``cls``'s docstring and
    its bases' (``a / b: text`` documents both ``a`` and ``b``)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass.__doc__:
            out.update(_docstring_items(inspect.cleandoc(klass.__doc__)))
    return out


def _docstring_items(doc: str) -> dict[str, str]:
    out: dict[str, str] = {}
    block = False
    indent = None
    current = None
    for line in doc.splitlines():
        if line.strip() in ("Attributes:", "Args:"):
            block, indent, current = True, None, None
            continue
        if not block:
            continue
        if line and not line.startswith(" "):
            block = False
            continue
        m = _ITEM.match(line)
        depth = len(line) - len(line.lstrip())
        if m and (indent is None or depth == indent):
            indent = depth
            current = [n.strip() for n in m.group(2).split("/")]
            for name in current:
                out[name] = m.group(3).strip()
        elif current and line.strip():
            for name in current:
                out[name] += " " + line.strip()
    return out


def _type_name(tp: Any) -> str:
    text = str(tp) if not isinstance(tp, type) else tp.__name__
    text = re.sub(r"typing\.|<class '|'>|medseg\.[a-z_.]+\.", "", text)
    return (
        text.replace("NoneType", "None")
        .replace("Annotated[", "")
        .replace(", FieldInfo(annotation=NoneType, required=True, metadata=[Gt(gt=0)])]", "")
    )


def _default_text(value: Any) -> str:
    if value is dataclasses.MISSING or value is inspect.Parameter.empty:
        return "required"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return f"`{type(value).__name__}()` defaults"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value!r}`".replace("'", '"')


def _dataclass_rows(cls: type) -> Iterator[tuple[str, str, str, str]]:
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        yield f.name, _type_name(hints.get(f.name, f.type)), _default_text(default), docs.get(f.name, "")


def _model_rows(model: Any) -> Iterator[tuple[str, str, str, str]]:
    docs = field_docs(model)
    for name, info in model.model_fields.items():
        if info.exclude:  # derived, not a key of the file
            continue
        default = info.get_default(call_default_factory=True)
        yield name, _type_name(info.annotation), _default_text(default), docs.get(name, "")


def _table(rows: Iterator[tuple[str, str, str, str]]) -> list[str]:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, tp, default, text in rows:
        lines.append(f"| `{name}` | {tp.replace('|', '∣')} | {default.replace('|', '∣')} | {text.replace('|', '∣')} |")
    return lines


def sections() -> dict[str, list[tuple[str, str, str, str]]]:
    """Rows ``(key, type, default, meaning)`` of every mapping section of a pipeline file."""
    from medseg.pipeline.config import InferenceSpec, InputSpec, NetworkSpec
    from medseg.training.config import TrainingConfig
    from medseg.transforms.augment import Augment

    return {
        "input": list(_model_rows(InputSpec)),
        "network": list(_model_rows(NetworkSpec)),
        "training": list(_dataclass_rows(TrainingConfig)),
        "training.augment": list(_dataclass_rows(Augment)),
        "inference": list(_model_rows(InferenceSpec)),
    }


def reference_markdown() -> str:
    """The whole reference (Markdown)."""
    from medseg.core.steps import STEPS
    from medseg.export import EXPORTERS
    from medseg.networks import list_networks

    lines = [
        "# Pipeline file reference",
        "",
        "Generated from the classes that validate a pipeline file (`python -m medseg.pipeline.reference`);",
        "`medseg validate FILE` prints a file's effective values, every default filled in. A pipeline file",
        "has the sections `name`, `description`, `input`, `preprocess`, `network`, `training`, `inference`,",
        "`postprocess` and `export`; each is optional and unknown keys are errors (with did-you-mean).",
        "",
    ]
    for name, rows in sections().items():
        lines += [f"## `{name}`", "", *_table(iter(rows)), ""]
    lines += [f"Registered networks: {', '.join(f'`{n}`' for n in list_networks())}.", ""]
    for stage in ("preprocess", "postprocess"):
        lines += [f"## `{stage}` steps", "", "A list of `- step_name: {options}`, applied in order.", ""]
        for step in STEPS.names():
            cls = STEPS.get(step)
            if cls.stage != stage or not cls.__module__.startswith("medseg."):  # built-ins only
                continue
            summary = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
            lines += [f"### `{step}`", "", summary, "", *_table(_dataclass_rows(cls)), ""]
    lines += ["## `export`", "", "A list of `- exporter_name: {options}`; every case is written by each.", ""]
    for name in EXPORTERS.names():
        cls = EXPORTERS.get(name)
        if not cls.__module__.startswith("medseg."):
            continue
        summary = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
        rows = list(_dataclass_rows(cls))
        lines += [f"### `{name}`", "", summary, ""]
        lines += [*_table(iter(rows)), ""] if rows else ["No options.", ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
