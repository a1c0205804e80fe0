"""Training with a pipeline: its preprocess, network and training sections drive the Trainer."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medseg.pipeline.pipeline import Pipeline
    from medseg.training import Dataset, TrainResult


def train_pipeline(
    pipeline: Pipeline,
    dataset: Dataset | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    fold: int | None = None,
    n_folds: int = 5,
    resume: bool = True,
    **overrides: Any,
) -> TrainResult:
    """Train the pipeline's network on ``dataset`` (nnU-Net folder, CSV manifest, DICOM export, or Dataset).

    The checkpoints carry the whole pipeline config, so ``medseg predict CHECKPOINT``
    needs no other file. ``overrides`` replace fields of the ``training:`` section
    (e.g. ``max_epochs=2``, ``device="cpu"``). RTSTRUCT/SEG labels are matched to
    ``input.labels`` (names, synonyms, patterns); cases left out are listed in
    ``OUT_DIR/skipped_cases.txt``.
    """
    from medseg.core.registry import check_options
    from medseg.pipeline.weights import carries_weights
    from medseg.training import Trainer, TrainingConfig, load_dataset

    if carries_weights(pipeline.spec.network.name):
        from medseg.errors import ConfigError

        raise ConfigError(
            f"{pipeline.source or pipeline.spec.name}: network '{pipeline.spec.network.name}' is a file with its "
            "weights and cannot be trained by medseg; train a registered network (e.g. unet) instead"
        )
    if not hasattr(dataset, "cases"):
        dataset = load_dataset(dataset, labels=pipeline.label_synonyms)
        if dataset.skipped:
            from medseg.io import write_text_atomic

            write_text_atomic(Path(out_dir) / "skipped_cases.txt", "\n".join(dataset.skipped) + "\n")

    settings = pipeline.training_config
    if overrides:
        check_options("training", TrainingConfig, overrides)
        settings = dataclasses.replace(settings, **overrides)
    config = pipeline.to_dict()
    config["training"] = {k: v for k, v in settings.to_dict().items() if k != "cache_dir"}
    trainer = Trainer(
        pipeline.spec.network.name,
        dict(pipeline.spec.network.options),
        out_dir=Path(out_dir),
        preprocess=pipeline.apply_preprocess,
        labels=pipeline.labels_with_background,
        channels=list(pipeline.spec.input.channels),
        config=config,
        training=settings,
    )
    return trainer.fit(dataset, fold=fold, n_folds=n_folds, resume=resume)
