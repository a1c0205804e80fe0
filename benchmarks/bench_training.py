"""Training throughput: medseg's engine beside a plain MONAI loop, same 3D U-Net, patch and batch.

Both loops train ``medseg.networks.UNet`` with Dice+CE (MONAI's ``DiceCELoss``) and SGD on
random foreground-oversampled patches of the same phantom cases, with comparable
augmentation (flips, rotation/scaling, noise, gamma):

* medseg: cases pre-processed to ``.npy`` and memory-mapped, :class:`PatchStream` in a
  ``DataLoader`` with ``--workers`` processes, batched augmentation (in the workers on the
  CPU, as the Trainer does; on the device when training on a GPU);
* MONAI: ``CacheDataset`` (load + channel-first cached) then ``RandCropByPosNegLabeld`` +
  ``RandFlipd`` + ``RandAffined`` + ``RandGaussianNoised`` + ``RandAdjustContrastd`` per sample
  in a ``DataLoader`` with the same number of workers.

Prints iterations per second and the time the model waited for data, per alternating round
(the machine may be shared; the best round of each is compared).

    python benchmarks/bench_training.py [--iterations 20] [--patch 64] [--batch 2] [--workers 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medseg.data import ct_phantom
from medseg.io import write
from medseg.networks import UNet
from medseg.training import load_dataset, prepare_dataset
from medseg.training.loader import PatchStream, make_loader
from medseg.transforms.augment import Augment


def make_cases(root: Path, n: int, shape: tuple[int, int, int]) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(n):
        image, label = ct_phantom(shape, (1.5, 1.5, 2.0), seed=i)
        img = np.clip(image.numpy().astype(np.float32), -200, 250) / 100.0
        write(image.replace(array=img), root / "imagesTr" / f"c{i}_0000.nii.gz")
        write(label, root / "labelsTr" / f"c{i}.nii.gz")
    labels = {"background": 0, "liver": 1, "spleen": 2, "kidney_left": 3, "lesion": 4}
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": labels}))
    return root


def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return UNet(1, 5, 3, n_stages=4, base_channels=16)


def train_loop(batches, net, n: int, augment=None) -> tuple[float, float]:
    from monai.losses import DiceCELoss

    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    gen = torch.Generator().manual_seed(0)
    net.train()
    wait = 0.0
    it = batches if hasattr(batches, "__next__") else iter(batches)
    for i in range(n + 2):
        if i == 2:  # after warm-up: workers started, kernels chosen
            start, wait = time.perf_counter(), 0.0
        t = time.perf_counter()
        x, y = next(it)
        if augment is not None:
            x, y = augment(x, y, gen)
        wait += time.perf_counter() - t
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
        opt.step()
    total = time.perf_counter() - start
    return n / total, wait


def monai_batches(root: Path, patch: int, batch: int, workers: int):
    from monai.data import CacheDataset, DataLoader
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        RandAdjustContrastd,
        RandAffined,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandGaussianNoised,
    )

    files = [
        {"image": str(p), "label": str(root / "labelsTr" / p.name.replace("_0000", ""))}
        for p in sorted((root / "imagesTr").glob("*.nii.gz"))
    ]
    k = ["image", "label"]
    transforms = Compose(
        [
            LoadImaged(k),
            EnsureChannelFirstd(k),
            RandCropByPosNegLabeld(k, "label", (patch,) * 3, pos=1, neg=2, num_samples=1),
            RandFlipd(k, prob=0.5, spatial_axis=0),
            RandFlipd(k, prob=0.5, spatial_axis=1),
            RandFlipd(k, prob=0.5, spatial_axis=2),
            RandAffined(
                k, prob=0.2, rotate_range=(0.5, 0.5, 0.5), scale_range=(0.3,) * 3, mode=("bilinear", "nearest")
            ),
            RandGaussianNoised("image", prob=0.1, std=0.1),
            RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5)),
        ]
    )
    transforms.set_random_state(0)
    ds = CacheDataset(files, transforms, progress=False)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0)

    def gen():
        while True:
            for b in loader:
                yield b["image"].as_tensor().float(), b["label"].as_tensor()

    return gen()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each is reported")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_cases(Path(tmp) / "ds", args.cases, (128, 128, 80))
        t = time.perf_counter()
        cases = prepare_dataset(load_dataset(root), None, Path(tmp) / "cache")
        prep = time.perf_counter() - t
        aug = Augment(p_elastic=0.0, p_blur=0.0, p_low_res=0.0, p_brightness=0.0, p_contrast=0.0)
        # as the Trainer does on the CPU: with workers they augment, else the training process does
        in_loader = args.workers > 0
        stream = PatchStream(cases, (args.patch,) * 3, args.batch, seed=0, augment=aug if in_loader else None)
        loader = iter(make_loader(stream, args.workers, pin_memory=False))
        monai_loader = monai_batches(root, args.patch, args.batch, args.workers)
        results: dict[str, list[tuple[float, float]]] = {"medseg": [], "MONAI": []}
        for _ in range(args.rounds):  # alternate, so both see the same machine load
            results["medseg"].append(train_loop(loader, network(), args.iterations, None if in_loader else aug))
            results["MONAI"].append(train_loop(monai_loader, network(), args.iterations))
        del loader, monai_loader
    (ours, ours_wait), (theirs, theirs_wait) = (max(results[k]) for k in ("medseg", "MONAI"))
    print(f"torch threads {torch.get_num_threads()}, patch {args.patch}³, batch {args.batch}, workers {args.workers}")
    print(
        "all rounds (it/s, data wait s):", {k: [(round(a, 3), round(b, 2)) for a, b in v] for k, v in results.items()}
    )
    print(f"medseg preprocessing + cache of {args.cases} cases: {prep:.2f} s")
    print(f"medseg : {ours:.3f} it/s, waited for data {ours_wait:.2f} s of {args.iterations / ours:.1f} s")
    print(f"MONAI  : {theirs:.3f} it/s, waited for data {theirs_wait:.2f} s of {args.iterations / theirs:.1f} s")
    print(f"ratio medseg/MONAI: {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
