"""The plain MONAI training recipe the benchmarks compare against (its tutorials' 3D U-Net loop).

Dictionary transforms with a ``CacheDataset``: load → channel first → RAS → 1.5 mm →
HU window (or z-score for MR) → positive/negative patch sampling (1:2, as medseg's foreground ratio 0.33) →
flips, 90° rotations, intensity scale/shift; Dice + cross-entropy; SGD (Nesterov,
momentum 0.99, lr 0.01) with a poly schedule over the planned iterations.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.common import TARGET_SPACING, monai_intensity_transform


def preprocess_transforms(
    keys: Sequence[str] = ("image", "label"), spacing: float = TARGET_SPACING, intensity: str = "ct"
) -> list:
    """Load and pre-process ``keys`` (labels with nearest neighbour) to ``spacing`` mm."""
    from monai.transforms import EnsureChannelFirstd, LoadImaged, Orientationd, Spacingd

    modes = ["bilinear" if k == "image" else "nearest" for k in keys]
    return [
        LoadImaged(list(keys)),
        EnsureChannelFirstd(list(keys)),
        Orientationd(list(keys), axcodes="RAS"),
        Spacingd(list(keys), pixdim=(spacing,) * 3, mode=modes),
        monai_intensity_transform(intensity),
    ]


def train(
    network: torch.nn.Module,
    cases: Sequence[tuple[Path, Path]],
    *,
    patch_size: Sequence[int],
    batch_size: int = 2,
    iterations: int | None = None,
    budget_s: float | None = None,
    seed: int = 0,
    spacing: float = TARGET_SPACING,
    intensity: str = "ct",
) -> dict[str, float]:
    """Train ``network`` in place on ``(image, label)`` files for ``iterations`` or ``budget_s`` seconds.

    Returns:
        ``iterations`` done, ``seconds`` of the loop (after caching), ``it_per_s`` over
        all but the first two iterations, ``cache_s``.
    """
    from monai.data import CacheDataset, DataLoader
    from monai.losses import DiceCELoss
    from monai.transforms import (
        Compose,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandRotate90d,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )
    from monai.utils import set_determinism

    set_determinism(seed)
    transforms = Compose(
        [
            *preprocess_transforms(spacing=spacing, intensity=intensity),
            RandCropByPosNegLabeld(
                ["image", "label"], "label", spatial_size=list(patch_size), pos=1, neg=2, num_samples=batch_size
            ),
            RandFlipd(["image", "label"], prob=0.5, spatial_axis=0),
            RandFlipd(["image", "label"], prob=0.5, spatial_axis=1),
            RandFlipd(["image", "label"], prob=0.5, spatial_axis=2),
            RandRotate90d(["image", "label"], prob=0.2, max_k=3),
            RandScaleIntensityd("image", factors=0.1, prob=0.15),
            RandShiftIntensityd("image", offsets=0.1, prob=0.15),
        ]
    )
    t0 = time.perf_counter()
    data = [{"image": str(i), "label": str(lab)} for i, lab in cases]
    ds = CacheDataset(data, transforms, cache_rate=1.0, num_workers=0, progress=False)
    loader = DataLoader(ds, batch_size=1, shuffle=True, num_workers=0)
    cache_s = time.perf_counter() - t0
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
    planned = iterations or 10**9
    network.train()
    done, start, warm = 0, time.perf_counter(), None
    while done < planned:
        for batch in loader:
            if done == 2:
                warm = time.perf_counter()
            elapsed = time.perf_counter() - start
            if done >= planned or (budget_s is not None and elapsed >= budget_s):
                planned = done
                break
            frac = elapsed / budget_s if budget_s else done / planned
            for group in optimizer.param_groups:
                group["lr"] = 0.01 * (1 - min(frac, 0.999)) ** 0.9
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(network(batch["image"]), batch["label"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 12.0)
            optimizer.step()
            done += 1
    end = time.perf_counter()
    network.eval()
    rate = (done - 2) / (end - warm) if warm is not None and done > 2 else done / max(end - start, 1e-9)
    return {"iterations": done, "seconds": end - start, "it_per_s": rate, "cache_s": cache_s}
