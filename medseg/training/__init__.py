"""Training: datasets, pre-processed cache, patch batches, losses, the :class:`Trainer`, checkpoints.

>>> from medseg.training import Trainer, load_dataset
>>> result = Trainer("unet", {"n_stages": 4}, out_dir="runs/x", patch_size=(64, 64, 32)).fit(
...     load_dataset("Dataset001"), fold=0)
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
