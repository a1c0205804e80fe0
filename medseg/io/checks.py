"""Checks shared by the readers: data sanity and allocation limits."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

from medseg.core import limits
from medseg.core.limits import format_bytes
from medseg.errors import InputError, InputWarning

#: Largest decoded image medseg will allocate, in bytes (see :mod:`medseg.core.limits`; MEDSEG_MAX_IMAGE_BYTES).
MAX_IMAGE_BYTES = limits.MAX_IMAGE_BYTES
#: How image data is stored: ``raw`` bytes, ``compressed`` (gzip, zlib, bzip2), ``text`` (numbers in
#: ASCII) or ``hex`` (two characters per byte).
Encoding = Literal["raw", "compressed", "text", "hex"]
#: Slack for compressed data: tiny streams have headers and trailers beside the ratio (1 MiB).
_COMPRESSED_SLACK = 2**20


def check_allocation(path: object, shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse to decode an image whose header promises more than :data:`MAX_IMAGE_BYTES`."""
    if any(int(s) <= 0 for s in shape):
        raise InputError(
            f"{path}: image has a zero-sized dimension, shape {tuple(shape)}; the file is empty or its header is wrong"
        )
    n = int(np.prod([int(s) for s in shape], dtype=object)) * int(itemsize)
    if n > MAX_IMAGE_BYTES:
        raise InputError(
            f"{path}: header claims shape {tuple(shape)} ({format_bytes(n)}), above the "
            f"{format_bytes(MAX_IMAGE_BYTES)} limit; the header is probably corrupt "
            "(raise MEDSEG_MAX_IMAGE_BYTES if the image is really that large)"
        )


def check_stored_size(
    path: object,
    shape: tuple[int, ...],
    itemsize: int,
    stored: int,
    encoding: Encoding,
    data_file: object = None,
    *,
    compressed_size: int | None = None,
) -> None:
    """Refuse, before decoding, a header declaring more data than the file can hold.

    Args:
        path: the image file (named in the message).
        shape: declared shape, channels included; ``itemsize``: bytes per stored value.
        stored: bytes of the file(s) available for the data (file size minus header), in bytes.
        encoding: how the data is stored. ``raw`` must hold every declared byte; ``compressed`` may
            expand at most :data:`medseg.core.limits.MAX_COMPRESSION_RATIO` times (+1 MiB);
            ``text`` needs a character per value and ``hex`` two per byte.
        data_file: the file holding the data when it is not ``path`` (detached headers), for the message.
        compressed_size: the compressed size the header states, when it does (MetaImage), in bytes.

    Raises:
        InputError: "truncated" (raw/text/hex) or "cannot hold" (compressed), with both byte counts.
    """
    count = int(np.prod([int(s) for s in shape], dtype=object))
    declared = count * int(itemsize)
    where = f"{path}" if data_file is None or str(data_file) == str(path) else f"{path} (data in {data_file})"
    needed = {"raw": declared, "text": count, "hex": 2 * declared, "compressed": compressed_size}.get(encoding)
    if needed is not None and stored < needed:
        raise InputError(
            f"{where}: truncated or damaged: the header declares shape {tuple(shape)}, {needed} bytes of "
            f"{encoding} data ({format_bytes(needed)}), the file has {stored}; re-export or re-copy the file"
        )
    ratio = limits.MAX_COMPRESSION_RATIO
    if encoding == "compressed" and declared > ratio * stored + _COMPRESSED_SLACK:
        raise InputError(
            f"{where}: the header declares shape {tuple(shape)} ({format_bytes(declared)}) but {stored} bytes of "
            f"compressed data cannot hold that much (more than {ratio:g}:1); the header is corrupt or the file "
            "truncated (raise MEDSEG_MAX_COMPRESSION_RATIO if the data really compresses that well)"
        )


def check_values(path: object, array: np.ndarray) -> None:
    """Reject non-numeric data; warn (:class:`InputWarning`) about NaN/Inf voxels."""
    if array.dtype.kind not in "biuf":
        raise InputError(f"{path}: voxel type {array.dtype} is not numeric; convert the image to integers or floats")
    if array.dtype.kind == "f":
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            warnings.warn(
                f"{path}: {bad} voxels are NaN or Inf; intensity steps will refuse them unless "
                "replaced (e.g. clip or nan_to_num before normalising)",
                InputWarning,
                stacklevel=3,
            )
