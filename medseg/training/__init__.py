"""Training: datasets, pre-processed cache, patch batches, losses, the :class:`Trainer`, checkpoints.

>>> import tempfile
>>> from medseg.data import write_phantom_dataset
>>> from medseg.training import Trainer, load_dataset
>>> root = tempfile.mkdtemp()
>>> data = load_dataset(write_phantom_dataset(f"{root}/Dataset900_Phantoms", n_cases=2, shape=(32, 32, 16)))
>>> trainer = Trainer("unet", {"n_stages": 3, "base_channels": 4}, out_dir=f"{root}/run",
...                   patch_size=(16, 16, 16), max_epochs=1, iterations_per_epoch=2, progress=False)
>>> result = trainer.fit(data, fold=0, n_folds=2)
>>> result.best_checkpoint.relative_to(root).as_posix(), sorted(result.metrics)[0]
('run/fold_0/best.pt', 'val_dice_kidney_left')
"""

from __future__ import annotations

from medseg.training.cache import CachedCase, CacheStats, prepare_dataset
from medseg.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from medseg.training.config import TrainingConfig, TrainResult
from medseg.training.dataset import Dataset, TrainingCase, load_dataset
from medseg.training.loader import PatchStream
from medseg.training.losses import ClassificationLoss, SegmentationLoss
from medseg.training.splits import load_or_create_splits, make_splits, summarize_folds
from medseg.training.trainer import Trainer

__all__ = [
    "CacheStats",
    "CachedCase",
    "Checkpoint",
    "ClassificationLoss",
    "Dataset",
    "PatchStream",
    "SegmentationLoss",
    "TrainResult",
    "Trainer",
    "TrainingCase",
    "TrainingConfig",
    "load_checkpoint",
    "load_dataset",
    "load_or_create_splits",
    "make_splits",
    "prepare_dataset",
    "save_checkpoint",
    "summarize_folds",
]
