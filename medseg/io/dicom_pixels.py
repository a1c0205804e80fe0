"""pydicom plumbing: the errors it raises, its warnings folded into one InputWarning, pixel decoding."""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import BytesLengthException, InvalidDicomError

from medseg.errors import DicomError, InputWarning

#: What pydicom raises for malformed files and tag values (it converts values lazily, on access).
PYDICOM_ERRORS = (
    InvalidDicomError,
    OSError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    KeyError,
    IndexError,
    OverflowError,
    struct.error,
    BytesLengthException,  # a value's length does not fit its VR
    RuntimeError,
    NotImplementedError,  # an unknown VR (e.g. a damaged byte in a tag header)
)
CODEC_HINT = "install the codec extra: pip install 'medseg[dicom-codecs]' (pylibjpeg, python-gdcm)"


class _PydicomLogFilter(logging.Filter):
    """Drops pydicom's log records while this thread is inside :func:`pydicom_warnings`."""

    state = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.state, "active", False)


logging.getLogger("pydicom").addFilter(_PydicomLogFilter())


@contextlib.contextmanager
def pydicom_warnings(f: Path) -> Iterator[None]:
    """Re-issue pydicom's complaints about odd tag values as one InputWarning naming ``f``.

    pydicom both warns and logs each complaint; the log lines are dropped meanwhile (in this
    thread only) so the CLI prints one message per problem.
    """
    state = _PydicomLogFilter.state
    previous = getattr(state, "active", False)
    state.active = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        state.active = previous
    odd = []
    for w in caught:
        if issubclass(w.category, InputWarning):
            warnings.warn(w.message, w.category, stacklevel=4)
        else:
            odd.append(str(w.message).split(". Please see")[0])
    if odd:
        more = f" (and {len(odd) - 1} more)" if len(odd) > 1 else ""
        warnings.warn(f"{f}: non-standard DICOM values: {odd[0]}{more}", InputWarning, stacklevel=4)


def decode(f: Path) -> np.ndarray:
    """The pixel array of one DICOM file; unreadable or undecodable data raises DicomError naming it."""
    try:
        with pydicom_warnings(f):
            ds = pydicom.dcmread(f)
    except PYDICOM_ERRORS as exc:
        raise DicomError(f"{f}: cannot read the file ({exc})") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DicomError(f"{f}: has no pixel data (header-only or stripped file); re-export the series")
    try:
        with pydicom_warnings(f):
            return np.asarray(ds.pixel_array)
    except BytesLengthException as exc:
        raise DicomError(f"{f}: pixel data is corrupt or inconsistent with the header ({exc})") from exc
    except (NotImplementedError, RuntimeError, ImportError) as exc:
        ts = ds.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(ts, "name", str(ts))
        raise DicomError(f"{f}: cannot decode pixel data compressed as '{name}' ({ts}); {CODEC_HINT}") from exc
    except PYDICOM_ERRORS as exc:
        raise DicomError(f"{f}: pixel data is corrupt or inconsistent with the header ({exc})") from exc
