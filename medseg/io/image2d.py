"""PNG/TIFF/JPEG 2D images as single-slice volumes (as MIScnn reads them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medseg.core.volume import Volume
from medseg.errors import InputError, OutputError
from medseg.io.atomic import atomic_path
from medseg.io.checks import check_values


def read_image2d(path: Path) -> Volume:
    """Read a 2D image as a ``(C, X, Y, 1)`` volume, X = columns, Y = rows, 1 mm spacing.

    Greyscale images have one channel, RGB three (alpha is dropped). A multi-page
    TIFF becomes a stack along Z.
    """
    try:
        with Image.open(path) as img:
            pages = []
            for i in range(getattr(img, "n_frames", 1)):
                img.seek(i)
                frame = img.convert("RGB") if img.mode in ("P", "RGBA", "LA", "CMYK", "YCbCr") else img
                pages.append(np.array(frame))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable 2D image ({exc})") from exc
    data = np.stack(pages, axis=-1)  # (rows, cols, [3,] Z)
    data = data[None] if data.ndim == 3 else np.moveaxis(data, 2, 0)
    data = np.ascontiguousarray(data.transpose(0, 2, 1, 3))
    check_values(path, data)
    meta = {"source": str(path), "format": "image2d", **({"colour": "RGB"} if data.shape[0] == 3 else {})}
    return Volume(data, np.eye(4), kind="intensity", meta=meta)


def write_image2d(volume: Volume, path: Path) -> None:
    """Write a single-slice volume (1 or 3 channels) as PNG/TIFF; labels keep their values."""
    data = volume.numpy()
    if data.shape[3] != 1 or data.shape[0] not in (1, 3):
        raise OutputError(f"{path}: 2D image formats need one slice and 1 or 3 channels, got {tuple(data.shape)}")
    img = data[..., 0].transpose(2, 1, 0)  # (rows, cols, C)
    img = img[..., 0] if img.shape[2] == 1 else img
    if img.dtype == bool or (volume.kind == "label" and img.max(initial=0) < 256 and img.min(initial=0) >= 0):
        img = img.astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(img)).save(tmp, format=None if tmp.suffix else "PNG")
