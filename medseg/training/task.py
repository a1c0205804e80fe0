"""What a network learns, chosen once per run: dense segmentation or case-level classification.

The :class:`Trainer` and :class:`PatchStream` ask the task for everything that differs between
the two (network options, default labels, the loss, one batch element, validation) instead of
branching on a string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from medseg.errors import ConfigError, InputError
from medseg.training.losses import ClassificationLoss, SegmentationLoss
from medseg.training.validation import dice_summary, per_class_dice, predict_case
from medseg.transforms.functional.croppad import crop_or_pad

if TYPE_CHECKING:
    from medseg.training.cache import CachedCase
    from medseg.training.config import TrainingConfig
    from medseg.training.dataset import Dataset
    from medseg.training.loader import PatchStream


class SegmentationTask:
    """Dense labels: patches with foreground oversampling, Dice+CE style losses, per-class Dice."""

    name: ClassVar[str] = "segmentation"
    #: validation metric that decides the best checkpoint (higher is better).
    score_key: ClassVar[str] = "val_dice_mean"
    #: augmentation transforms the target too.
    spatial_target: ClassVar[bool] = True

    def network_options(
        self, options: Mapping[str, Any], n_channels: int, n_classes: int, patch_size: Sequence[int]
    ) -> dict[str, Any]:
        """``options`` with ``in_channels``, ``out_channels`` and ``spatial_dims`` filled in."""
        opts = dict(options)
        opts.setdefault("in_channels", n_channels)
        opts.setdefault("out_channels", n_classes)
        opts.setdefault("spatial_dims", len(patch_size))
        return opts

    def default_labels(self, dataset: Dataset, cases: Sequence[CachedCase]) -> dict[int, str]:
        """Labels when neither the pipeline nor the dataset names them: every value found."""
        values: set[int] = {0}
        for c in cases:
            values |= set(c.locations())
        return {v: ("background" if v == 0 else f"label_{v}") for v in range(max(values) + 1)}

    def check_cases(self, cases: Sequence[CachedCase], labels: Mapping[int, str]) -> None:
        """Refuse label values the run does not know (before any training)."""
        for c in cases:
            unknown = sorted(set(c.locations()) - set(labels))
            if unknown:
                raise InputError(
                    f"case '{c.case_id}': label values {unknown} are not among the labels {dict(labels)}; "
                    "add them to the labels (dataset.json or the pipeline's input.labels) or remap the label files"
                )

    def loss(self, name: str) -> nn.Module:
        return SegmentationLoss(name)

    def element(self, stream: PatchStream, index: int, position: int, rng: np.random.Generator) -> tuple[Any, Any]:
        """Patch and label patch of case ``index``; the last ``stream.n_fg`` of a batch are foreground-centred."""
        image, label, locations = stream.open(index)
        if label is None:
            raise InputError(f"case '{stream.cases[index].case_id}' has no label; segmentation training needs one")
        sampler = stream.foreground if position >= stream.batch_size - stream.n_fg else stream.anywhere
        return sampler.sample(image, label, 1, rng, locations=locations)[0]

    @torch.no_grad()
    def validate(
        self,
        network: nn.Module,
        cases: Sequence[CachedCase],
        labels: Mapping[int, str],
        device: torch.device,
        precision: torch.dtype | None,
        settings: TrainingConfig,
    ) -> dict[str, float]:
        """Per-class Dice of a sliding-window prediction on each whole validation case."""
        per_case = []
        fg = [k for k in labels if k != 0]
        for c in cases:
            image = torch.from_numpy(np.asarray(c.image(mmap=False))).to(device)
            target = torch.from_numpy(np.asarray(c.label(mmap=False))[0]).to(device)
            kw = dict(patch_size=settings.patch_size, overlap=settings.val_overlap, batch_size=settings.val_batch_size)
            if len(settings.patch_size) == 2:  # slice-wise: one slice at a time
                slices = image.permute(3, 0, 1, 2)
                logits = torch.stack([predict_case(network, sl, precision=precision, **kw) for sl in slices], dim=-1)
            else:
                logits = predict_case(network, image, precision=precision, **kw)
            per_case.append(per_class_dice(logits.argmax(0), target, fg))
        return dice_summary(per_case, {k: labels[k] for k in fg})


class ClassificationTask:
    """One class per case: centre/random crops, cross-entropy, accuracy."""

    name: ClassVar[str] = "classification"
    score_key: ClassVar[str] = "val_accuracy"
    spatial_target: ClassVar[bool] = False

    def network_options(
        self, options: Mapping[str, Any], n_channels: int, n_classes: int, patch_size: Sequence[int]
    ) -> dict[str, Any]:
        opts = dict(options)
        opts.setdefault("in_channels", n_channels)
        opts.setdefault("n_classes", n_classes)
        opts.setdefault("spatial_dims", len(patch_size))
        opts.setdefault("input_size", list(patch_size))
        return opts

    def default_labels(self, dataset: Dataset, cases: Sequence[CachedCase]) -> dict[int, str]:
        classes = sorted({int(c.class_label) for c in cases if c.class_label is not None})
        if not classes:
            raise InputError(f"{dataset.source}: no case has a 'class'; the classifier needs case-level labels")
        return {i: f"class_{i}" for i in range(max(classes) + 1)}

    def check_cases(self, cases: Sequence[CachedCase], labels: Mapping[int, str]) -> None:
        for c in cases:
            if c.class_label is not None and int(c.class_label) not in labels:
                raise InputError(f"case '{c.case_id}': class {c.class_label} is not among the classes {dict(labels)}")

    def loss(self, name: str) -> nn.Module:
        return ClassificationLoss(name)

    def element(self, stream: PatchStream, index: int, position: int, rng: np.random.Generator) -> tuple[Any, Any]:
        """A random crop (padded when the image is smaller) and the case's class."""
        image, _, _ = stream.open(index)
        t = image.tensor()
        start = [
            int(rng.integers(0, s - p + 1)) if s > p else -((p - s) // 2) for s, p in zip(t.shape[1:], stream.patch3)
        ]
        return crop_or_pad(t, start, stream.patch3, 0.0), torch.tensor(int(stream.cases[index].class_label or 0))

    @torch.no_grad()
    def validate(
        self,
        network: nn.Module,
        cases: Sequence[CachedCase],
        labels: Mapping[int, str],
        device: torch.device,
        precision: torch.dtype | None,
        settings: TrainingConfig,
    ) -> dict[str, float]:
        """Accuracy on the centre crop of each validation case."""
        correct = 0
        patch3 = (*settings.patch_size, 1)[:3]
        for c in cases:
            img = torch.from_numpy(np.asarray(c.image(mmap=False)))
            start = [(int(sz) - p) // 2 for sz, p in zip(img.shape[1:], patch3)]
            x = crop_or_pad(img, start, patch3, 0.0)
            x = (x[..., 0] if len(settings.patch_size) == 2 else x)[None].to(device)
            correct += int(network(x).argmax(1).item() == int(c.class_label or 0))
        return {"val_accuracy": correct / max(len(cases), 1)}


Task = SegmentationTask | ClassificationTask


def task_for(kind: str) -> Task:
    """The task object for a network's kind (``"segmentation"`` or ``"classification"``)."""
    if kind == "segmentation":
        return SegmentationTask()
    if kind == "classification":
        return ClassificationTask()
    raise ConfigError(f"unknown task '{kind}'; networks are 'segmentation' or 'classification'")
