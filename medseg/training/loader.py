"""Training batches: random patches with foreground oversampling from memory-mapped cases.

A :class:`PatchStream` is an endless, seeded stream of collated batches; a torch
``DataLoader`` runs it in ``num_workers`` processes and pins memory for the copy to the GPU.
Each batch is drawn from its own seed ``(seed, rank, epoch, index within the epoch)``, so the
stream does not depend on the number of workers, and a run resumed at an epoch sees exactly the
batches an uninterrupted run would have seen from there.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from medseg.core.volume import Volume
from medseg.training.cache import CachedCase
from medseg.training.task import SegmentationTask
from medseg.transforms import RandomPatches

if TYPE_CHECKING:
    from medseg.training.task import Task


class PatchStream(IterableDataset):  # type: ignore[type-arg]
    """Endless batches ``(image (B, C, *p), label (B, 1, *p) uint8)`` or ``(image, class (B,))``.

    Each batch element comes from a case drawn uniformly; of the ``batch_size`` elements the
    last ``round(batch_size * foreground_ratio)`` (at least one when the ratio is > 0 and
    the batch has more than one element, as in nnU-Net) are centred on a foreground voxel
    (patches via :class:`medseg.transforms.RandomPatches`).

    Args:
        cases: pre-processed cases (read memory-mapped).
        patch_size: patch in voxels, 2 or 3 values; a 2D patch is taken from one slice
            (``Z = 1``) and returned without the Z axis.
        batch_size: patches per batch.
        foreground_ratio: fraction of foreground-centred patches.
        seed: base seed; batch ``i`` of epoch ``e`` on rank ``r`` is drawn from ``(seed, r, e, i)``.
        rank: process rank under DDP.
        start_epoch: epoch the stream starts at (a resumed run continues the stream of an uninterrupted one).
        iterations_per_epoch: batches per epoch (where the epoch of a batch changes).
        task: what one batch element is (:class:`medseg.training.task.SegmentationTask`: label
            patches; ``ClassificationTask``: case classes).
        augment: applied to each batch in the loader (used when training on the CPU, so
            augmentation overlaps with compute in the worker processes; on a GPU the trainer
            augments on the device instead).
    """

    def __init__(
        self,
        cases: Sequence[CachedCase],
        patch_size: Sequence[int],
        batch_size: int,
        *,
        foreground_ratio: float = 0.33,
        class_balanced: bool = False,
        seed: int = 0,
        rank: int = 0,
        start_epoch: int = 0,
        iterations_per_epoch: int = 250,
        task: Task | None = None,
        augment: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None = None,
    ) -> None:
        super().__init__()
        self.augment = augment
        self.cases = list(cases)
        self.dims = len(patch_size)
        self.patch3: tuple[int, int, int] = (*(int(p) for p in patch_size), 1)[:3]  # type: ignore[assignment]
        self.batch_size = int(batch_size)
        self.seed, self.rank, self.start_epoch = seed, rank, start_epoch
        self.iterations_per_epoch = int(iterations_per_epoch)
        self.task: Task = task if task is not None else SegmentationTask()
        n_fg = round(self.batch_size * foreground_ratio)
        if foreground_ratio > 0 and self.batch_size > 1:
            n_fg = max(n_fg, 1)
        self.n_fg = n_fg
        #: patch samplers centred on foreground / anywhere (used by the segmentation task).
        self.foreground = RandomPatches(self.patch3, foreground_ratio=1.0, class_balanced=class_balanced)
        self.anywhere = RandomPatches(self.patch3, foreground_ratio=0.0)
        self._opened: dict[int, tuple[Volume, Volume | None, dict[int, torch.Tensor]]] = {}

    def open(self, i: int) -> tuple[Volume, Volume | None, dict[int, torch.Tensor]]:
        """Case ``i`` as image and label Volumes (memory-mapped) and its foreground locations."""
        if i not in self._opened:
            c = self.cases[i]
            image = Volume(c.image(mmap=True), c.affine)
            label = Volume(c.label(mmap=True), c.affine, kind="label") if c.has_label else None
            locations = c.locations() if c.has_label else {}
            self._opened[i] = (image, label, locations)
        return self._opened[i]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        # the DataLoader takes batches from its workers in turn: worker w makes batches w, w + W, w + 2W, ...
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        index = self.start_epoch * self.iterations_per_epoch + worker
        while True:
            epoch, within = divmod(index, self.iterations_per_epoch)
            rng = np.random.default_rng([self.seed, self.rank, epoch, within])
            x, y = self.batch(rng)
            if self.augment is not None:
                generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
                x, y_aug = self.augment(x, y if self.task.spatial_target else None, generator)
                y = y_aug if y_aug is not None else y
            yield x, y
            index += n_workers

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One collated batch drawn with ``rng``."""
        images, targets = [], []
        for j in range(self.batch_size):
            image, target = self.task.element(self, int(rng.integers(len(self.cases))), j, rng)
            images.append(image)
            targets.append(target)
        x = torch.stack(images).float()
        y = torch.stack(targets)
        if self.dims == 2:
            x = x[..., 0]
            if y.ndim == 5:
                y = y[..., 0]
        return x, y


def make_loader(stream: PatchStream, num_workers: int, pin_memory: bool) -> DataLoader:  # type: ignore[type-arg]
    """A ``DataLoader`` over ``stream`` (already batched) with ``num_workers`` processes."""
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        worker_init_fn=_leave_signals_to_the_trainer if num_workers > 0 else None,
    )


def _leave_signals_to_the_trainer(worker_id: int) -> None:
    """Workers ignore SIGINT/SIGTERM (Ctrl-C and schedulers signal the whole process group): the training
    process stops cleanly and ends them; they also end by themselves when it dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
