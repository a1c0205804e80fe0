"""The exceptions medseg raises on purpose.

Every error a user can cause (bad file, bad config, mismatched grids) is a
:class:`MedsegError`; its message says what was expected, what came and what to
do, and names the file when there is one. The CLI prints the message as one line
and exits non-zero, without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches


class MedsegError(Exception):
    """Base class of every error medseg raises deliberately."""


class InputError(MedsegError):
    """An input file or folder cannot be read, or its content is not usable."""


class DicomError(InputError):
    """A DICOM file or series is unusable (non-image, mixed series, missing slices, ...)."""


class GeometryError(MedsegError):
    """Grids (shape, affine) do not match, or an affine cannot be represented."""


class ConfigError(MedsegError):
    """A pipeline file, step option or command-line option is invalid."""


class CheckpointError(MedsegError):
    """A checkpoint is missing, not a medseg checkpoint, or does not fit the pipeline."""


class OutputError(MedsegError):
    """An output cannot be written (bad path, escapes the output folder, disk full)."""


class ArchiveError(MedsegError):
    """A DICOM archive (PACS) cannot be reached, refused the association or request, or sent bad data."""


class InputWarning(UserWarning):
    """Input is usable but suspicious (NaN voxels, sheared affine, odd DICOM tags)."""


class PluginWarning(UserWarning):
    """A third-party plugin (entry point) could not be loaded; medseg carries on without it."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or the list of valid ones.

    Used by every registry and config check so unknown names never fail silently.
    """
    options = sorted(choices)
    close = get_close_matches(name, options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (valid: {', '.join(options)})" if options else ""
