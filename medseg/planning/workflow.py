"""``plan_dataset``: dataset → ``fingerprint.json``, ``pipeline.yaml`` (validated) and ``plan.json`` in one folder."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.core.device import resolve_device
from medseg.errors import ConfigError
from medseg.io import write_text_atomic
from medseg.io.roi_names import LabelNames
from medseg.planning.planner import Plan, PlanOptions

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|hr|hours?|m|min|minutes?|s|sec|seconds?)?", re.IGNORECASE)
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str, option: str = "--time-budget") -> float:
    """``"2h"``, ``"90m"``, ``"1h30m"``, ``"7200"``, ``"45s"`` → seconds (the one parser of durations).

    Raises:
        ConfigError: not a positive duration (names ``option``).
    """
    s = str(text).strip()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos or not m.group(0):
            break
        total += float(m.group(1)) * _UNIT[(m.group(2) or "s")[0].lower()]
        pos = m.end()
        while pos < len(s) and s[pos] == " ":
            pos += 1
    if pos != len(s) or not s:
        raise ConfigError(f"{option}: {text!r} is not a duration; use seconds (7200) or units (2h, 90m, 1h30m)")
    if total <= 0:
        raise ConfigError(
            f"{option}: {text!r} leaves no time to train; give a positive duration such as 10m or 2h (omit "
            f"{option} for no limit)"
        )
    return total


@dataclass(frozen=True)
class PlanFiles:
    """What :func:`plan_dataset` wrote."""

    pipeline: Path
    fingerprint: Path
    record: Path
    plan: Plan


def plan_dataset(
    data: str | os.PathLike[str],
    output: str | os.PathLike[str],
    options: PlanOptions | None = None,
    *,
    probe: bool = True,
    labels: LabelNames | None = None,
) -> PlanFiles:
    """Fingerprint ``data`` (cached in ``output/fingerprint.json``), plan, and write the plan.

    Args:
        data: nnU-Net/MSD folder, CSV manifest or folder of DICOM cases.
        output: folder for ``fingerprint.json``, ``pipeline.yaml`` and ``plan.json``.
        options: the user's options (device ``"auto"`` is resolved here).
        probe: measure candidates on the device (False: nnU-Net's memory estimate; no time budget).
        labels: ``{value: [name, synonym, "PATTERN*"]}`` naming the ROIs of RTSTRUCT/SEG labels
            (``--labels FILE``); the planned pipeline's ``input.labels`` carries them.

    Returns:
        The written files and the :class:`Plan`.
    """
    import dataclasses

    from medseg.pipeline import Pipeline
    from medseg.planning.consistency import open_dataset
    from medseg.planning.fingerprint import fingerprint_dataset
    from medseg.planning.planner import plan
    from medseg.planning.render import plan_record, render_yaml

    options = options or PlanOptions()
    options = dataclasses.replace(options, device=str(resolve_device(options.device, option="--device")))
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    dataset = open_dataset(data, labels)
    fp = fingerprint_dataset(dataset, cache=out / "fingerprint.json")
    if probe:
        from medseg.planning.probes import ProbeDevice, time_preprocessing, timing_seconds

        with ProbeDevice(options.device, timing_s=timing_seconds(options.time_budget_s)) as device:
            result = plan(fp, options, device, lambda items: time_preprocessing(dataset, fp, items))
    else:
        result = plan(fp, options, None, None)
    text = render_yaml(result)
    path = out / "pipeline.yaml"
    from medseg.pipeline.config import parse_yaml

    Pipeline.from_dict(parse_yaml(text, path), source=path)  # the file must load as written
    write_text_atomic(path, text)
    record = out / "plan.json"
    write_text_atomic(record, json.dumps(plan_record(result), indent=1, default=_plain))
    return PlanFiles(path, out / "fingerprint.json", record, result)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
