"""The short model card (``MODEL_CARD.md``) written into every model package."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medseg.pipeline import Pipeline


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.3f}" if values else "-"


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
        f"- {len(metrics) or 'no'} validated fold(s); patch {list(t.patch_size)}, batch {t.batch_size}, "
        f"{t.max_epochs} epochs × {t.iterations_per_epoch} iterations, {t.optimizer}",
        f"- trained with medseg {described['versions'].get('medseg', '?')}, torch {described['versions'].get('torch', '?')}",
        "",
        "## Validation (cross-validation folds)",
    ]
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
        lines.append("No validation metrics (trained on all cases).")
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
