"""Write a plan as a commented ``pipeline.yaml`` (every value preceded by its reason) and as a table."""

from __future__ import annotations

import io
import math
import os
import textwrap
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import yaml

from medseg.planning.decisions import Decision, fmt, fmt_bytes

if TYPE_CHECKING:
    from medseg.planning.planner import Plan

_WIDTH = 118
_MAPPINGS = ("input", "training", "inference")
_LISTS = ("preprocess", "postprocess", "export")


def flow(value: Any) -> str:
    """``value`` as one line of YAML flow style."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False, allow_unicode=True).strip()
    return text[:-3].strip() if text.endswith("...") else text


def _comment(decision: Decision, indent: str) -> list[str]:
    body = f"{flow(decision.value)} — {decision.text()} [{decision.origin}]"
    return textwrap.wrap(body, _WIDTH - len(indent), initial_indent=f"{indent}# ", subsequent_indent=f"{indent}#   ")


class _Comments:
    """Hands out each decision's comment once, by the key it explains."""

    def __init__(self, decisions: list[Decision]) -> None:
        self.pending = list(decisions)

    def take(self, indent: str, *keys: str, prefix: str | None = None) -> list[str]:
        out: list[str] = []
        for d in list(self.pending):
            if d.key in keys or (prefix is not None and d.key.startswith(prefix)):
                out += _comment(d, indent)
                self.pending.remove(d)
        return out


def header_lines(plan: Plan) -> list[str]:
    """The file header: what was planned from what, on which device, with which probes."""
    from medseg import __version__

    fp, opts = plan.fingerprint, plan.options
    try:
        load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        load = "unknown"
    lines = [
        f"Planned by medseg plan {__version__} on {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} from "
        f"{fp.n_cases} cases of {fp.data.get('source')} (fingerprint.json beside this file).",
        f"Device {opts.device}, {os.cpu_count()} CPU cores, load average {load} while planning; "
        f"memory budget {f'{opts.memory_gb:g} GB' if opts.memory_gb else 'the device default'}, "
        f"time budget {f'{opts.time_budget_s:g} s' if opts.time_budget_s else 'none'}.",
        "Each planned value below follows a comment: the value, the rule, the numbers it came from, whose rule.",
    ]
    for net, batch, m in plan.probes:
        what = (
            f"peak {fmt_bytes(m.peak_bytes)} (baseline {fmt_bytes(m.baseline_bytes)}), "
            f"{fmt(m.seconds_per_iteration)} s/iteration"
            if m.ok
            else f"failed: {m.error}"
        )
        lines.append(f"probe: patch {fmt(list(net.topology.patch))}, widths {net.features[0]}.., batch {batch}: {what}")
    for name, conf in plan.configurations.items():
        chosen = "chosen" if name == plan.chosen else "not chosen"
        lines.append(
            f"{name} ({chosen}): patch {fmt(conf.patch)}, batch {conf.batch}, {conf.network.topology.n_stages} stages, "
            f"{conf.schedule.max_epochs} × {conf.schedule.iterations_per_epoch} iterations"
            + (f"; {'; '.join(conf.notes)}" if conf.notes else "")
        )
    out = []
    for line in lines:
        out += textwrap.wrap(line, _WIDTH, initial_indent="# ", subsequent_indent="#   ")
    return out


def render_yaml(plan: Plan) -> str:
    """The plan's pipeline as YAML text, every decision as a comment above the value it explains."""
    p = plan.pipeline
    comments = _Comments(plan.decisions)
    lines = [*header_lines(plan), f"name: {flow(p['name'])}", f"description: {flow(p['description'])}"]
    for section in ("input", "preprocess", "network", "training", "inference", "postprocess", "export"):
        value = p[section]
        lines += comments.take("", section)
        if section in _MAPPINGS:
            lines.append(f"{section}:")
            for key, v in value.items():
                lines += comments.take("  ", f"{section}.{key}", prefix=f"{section}.{key}.")
                lines.append(f"  {key}: {flow(v)}")
        elif section == "network":
            lines += ["network:", f"  name: {flow(value['name'])}", "  options:"]
            for key, v in value["options"].items():
                lines += comments.take("    ", f"network.options.{key}")
                lines.append(f"    {key}: {flow(v)}")
        elif not value:
            lines.append(f"{section}: []")
        else:
            lines.append(f"{section}:")
            for i, item in enumerate(value):
                ((name, options),) = item.items()
                lines += comments.take("  ", f"{section}[{i}]", f"{section}.{name}", prefix=f"{section}.{name}.")
                lines.append(f"  - {name}: {flow(options)}")
        lines += comments.take("  " if value else "", prefix=f"{section}.")  # steps not planned, and why
    if comments.pending:
        lines.append("# Other decisions:")
        for d in comments.pending:
            lines += _comment(d, "")
    return "\n".join(lines) + "\n"


def explain_table(plan: Plan, width: int = 160) -> str:
    """The decisions as a text table (what ``medseg plan --explain`` prints)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"medseg plan: {plan.pipeline['name']}", show_lines=True)
    for column in ("setting", "value", "rule", "numbers", "rule of"):
        table.add_column(column, overflow="fold")
    for d in plan.decisions:
        table.add_row(d.key, flow(d.value), d.rule, d.numbers, d.origin)
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(table)
    return buffer.getvalue()


def plan_record(plan: Plan) -> dict[str, Any]:
    """``plan.json``: decisions, configurations and probes as plain data."""

    def num(v: float) -> float | None:
        return None if not math.isfinite(v) else float(v)

    return {
        "chosen": plan.chosen,
        "warnings": plan.warnings,
        "options": {k: getattr(plan.options, k) for k in plan.options.__dataclass_fields__},
        "decisions": [
            {"key": d.key, "value": d.value, "rule": d.rule, "numbers": d.numbers, "origin": d.origin}
            for d in plan.decisions
        ],
        "configurations": {
            name: {
                "axcodes": c.axcodes,
                "spacing": c.spacing,
                "median_shape": c.median_shape,
                "patch": c.patch,
                "batch": c.batch,
                "strides": [list(s) for s in c.network.topology.strides],
                "kernel_sizes": [list(k) for k in c.network.topology.kernel_sizes],
                "features": list(c.network.features),
                "max_epochs": c.schedule.max_epochs,
                "iterations_per_epoch": c.schedule.iterations_per_epoch,
                "notes": c.notes,
                "warnings": c.warnings,
                "predicted_seconds_per_case": num(c.case_seconds),
            }
            for name, c in plan.configurations.items()
        },
        "probes": [
            {
                "patch": list(net.topology.patch),
                "features": list(net.features),
                "batch": batch,
                "ok": m.ok,
                "peak_bytes": num(m.peak_bytes),
                "baseline_bytes": num(m.baseline_bytes),
                "seconds_per_iteration": num(m.seconds_per_iteration),
                "seconds_per_window": num(m.seconds_per_window),
                "epoch_overhead_s": num(m.epoch_overhead_s),
                "wall_s": m.wall_s,
                "error": m.error,
            }
            for net, batch, m in plan.probes
        ],
    }
