"""The short model card (``MODEL_CARD.md``) written into every model package."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medseg.pipeline import Pipeline


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.3f}" if values else "-"


def _validated(metrics: dict[str, Any]) -> bool:
    """Whether a fold's ``metrics.json`` holds validation results."""
    if "validations" in metrics:
        return int(metrics["validations"]) > 0
    return any("dice" in k or "accuracy" in k for k in metrics)  # older runs: validation results present


def _planned(t: Any) -> str:
    if t.max_time_s is not None:
        return f"{t.max_time_s:g} s of training (epochs of {t.iterations_per_epoch} iterations)"
    return f"{t.max_epochs} epochs × {t.iterations_per_epoch} iterations"


_STOPPED = {
    "completed": "completed",
    "time limit": "stopped by the time limit",
    "early stopping": "stopped early (no better validation)",
}


def _what_ran(m: dict[str, Any]) -> str:
    """One fold's run as it happened, from its ``metrics.json`` (older runs record only the epochs)."""
    if "iterations" not in m:
        return f"{m.get('epochs', '?')} epochs (older run: iterations and stop reason not recorded)"
    planned = f" of {m['epochs_planned']}" if m.get("epochs_planned") is not None else ""
    n_val = int(m.get("validations", 0))
    return (
        f"{m.get('epochs', '?')}{planned} epochs, {m['iterations']} iterations in {m.get('training_s', 0):.0f} s, "
        f"{f'{n_val} validation(s)' if n_val else 'no validation'}, "
        f"{_STOPPED.get(str(m.get('stopped_by')), str(m.get('stopped_by')))}"
    )


def model_card(
    name: str, pipeline: Pipeline, described: dict[str, Any], metrics: dict[str, Any], files: list[str]
) -> str:
    """Markdown: what the model segments, from what, how it was trained and validated, and its files.

    Args:
        name: the model's name.
        pipeline: the packaged pipeline.
        described: ``{"network", "options", "versions"}`` of the checkpoints.
        metrics: fold name → that fold's ``metrics.json`` (validation Dice per label, ...).
        files: the package's members.
    """
    t = pipeline.training_config
    labels = ", ".join(f"{v} = {n}" for v, n in sorted(pipeline.labels.items()))
    lines = [
        f"# {name}",
        "",
        pipeline.spec.description or "(no description in the pipeline)",
        "",
        "## What it does",
        f"- input: {pipeline.spec.input.modality}, channels {', '.join(pipeline.spec.input.channels)}",
        f"- labels: {labels} (0 = background)",
        f"- pre-processing: {', '.join(s.name for s in pipeline.preprocess) or 'none'}",
        f"- network: `{described['network']}` {described['options']}",
        f"- post-processing: {', '.join(s.name for s in pipeline.postprocess) or 'none'}",
        "",
        "## Training",
        f"- {sum(map(_validated, metrics.values())) or 'no'} validated fold(s); patch {list(t.patch_size)}, "
        f"batch {t.batch_size}, {t.optimizer}; planned: {_planned(t)}",
        *[f"- {fold}: {_what_ran(m)}" for fold, m in metrics.items()],
        f"- trained with medseg {described['versions'].get('medseg', '?')}, torch {described['versions'].get('torch', '?')}",
        "",
        "## Validation (cross-validation folds)",
    ]
    metrics = {fold: m for fold, m in metrics.items() if _validated(m)}
    if metrics:
        keys = sorted(
            {k for m in metrics.values() for k, v in m.items() if isinstance(v, (int, float)) and "dice" in k}
        )
        lines += ["", "| metric | " + " | ".join(metrics) + " | mean |", "|---|" + "---|" * (len(metrics) + 1)]
        for key in keys:
            vals = [m.get(key) for m in metrics.values()]
            cells = [f"{v:.3f}" if isinstance(v, (int, float)) else "-" for v in vals]
            lines.append(
                f"| {key} | " + " | ".join(cells) + f" | {_mean([v for v in vals if isinstance(v, (int, float))])} |"
            )
    else:
        lines.append("No validation metrics (no fold was validated).")
    lines += [
        "",
        "## Use",
        "```bash",
        f"medseg model install {name}.zip      # into $MEDSEG_HOME/models/{name}",
        f"medseg predict {name} -i IMAGE_OR_FOLDER -o OUT",
        "```",
        "",
        "Research use only; check it on your own data before relying on it.",
        "",
        "## Files",
        *[f"- `{f}`" for f in files],
    ]
    return "\n".join(lines) + "\n"
