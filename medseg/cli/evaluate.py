"""``medseg evaluate``: metrics of predicted label maps against references, per case and summary."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import typer

from medseg.cli.main import app
from medseg.errors import ConfigError


def parse_labels(labels: str | None) -> list[int] | None:
    """``"1,2,5"`` → ``[1, 2, 5]``; None stays None.

    Raises:
        ConfigError: not a comma-separated list of integers.
    """
    if labels is None or not labels.strip():
        return None
    try:
        return [int(v) for v in labels.split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"--labels must be comma-separated integers such as '1,2,3', got {labels!r}") from exc


@app.command()
def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Predicted label map, or a folder of them."),
    gt: Path = typer.Option(..., "--gt", help="Reference label map, or a folder (paired by file name)."),
    output: Path = typer.Option(..., "-o", "--output", help="Per-case CSV; the summary goes beside it as .json."),
    labels: str | None = typer.Option(None, "--labels", help="Labels to evaluate, e.g. '1,2' (default: all present)."),
    tolerance_mm: float = typer.Option(1.0, "--tolerance-mm", help="Tolerance of the surface Dice, mm."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Dice, IoU, precision/recall, HD95, ASSD, surface Dice and volume differences per case and label."""
    from medseg.metrics.report import evaluate_folders, label_names, write_report

    if tolerance_mm < 0:
        raise ConfigError(f"--tolerance-mm must be >= 0, got {tolerance_mm}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = evaluate_folders(pred, gt, labels=parse_labels(labels), tolerance_mm=tolerance_mm)
    for message in dict.fromkeys(str(w.message) for w in caught):
        typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)
    csv_path, json_path, summary = write_report(rows, output)
    if as_json:
        typer.echo(json.dumps({"csv": str(csv_path), "summary_json": str(json_path), "summary": summary}, indent=2))
        return
    names = label_names(pred)
    n_cases = len({r["case"] for r in rows})
    typer.echo(f"{n_cases} case(s) → {csv_path}, summary → {json_path}")
    for lab, per in summary.items():
        parts = [
            f"{m} {per[m]['mean']:.4g}"
            for m in ("dice", "hausdorff95_mm", "surface_dice")
            if per[m]["mean"] is not None
        ]
        name = f" ({names[int(lab)]})" if int(lab) in names else ""
        typer.echo(f"  label {lab}{name}: {', '.join(parts)}")
