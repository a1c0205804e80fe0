"""``medseg demo``: the whole chain on sample_data/ (read, pre-process, predict, post-process, export, evaluate)."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli.main import app


@app.command()
def demo(
    output: Path = typer.Option(Path("demo_output"), "-o", "--output", help="Where the demo writes everything."),
    sample_data: Path = typer.Option(
        None,
        "--sample-data",
        help="The sample_data folder (default: the one installed with medseg, or the checkout's).",
    ),
    train: bool = typer.Option(
        False, "--train", help="Train a model briefly instead of loading the shipped checkpoint."
    ),
    epochs: int = typer.Option(None, "--epochs", help="Epochs when training (default: the pipeline's)."),
) -> None:
    """Run the demo on sample_data/ and print where every output is and the Dice it got."""
    from medseg.demo import run_demo

    run_demo(output, sample=sample_data, train=train, max_epochs=epochs, echo=typer.echo)
