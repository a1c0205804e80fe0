"""Resource limits on what medseg reads, in one place (listed in ``docs/reliability.md``, "Limits").

A header, a YAML file or a zip can claim far more than it holds: a 155-byte image declaring
600³ voxels, a 700-byte YAML whose aliases expand to gigabytes, a 1 MB package holding a
1 GiB member. Each claim is checked against these limits *before* anything is allocated or
unpacked. Every limit is read once, at import, from its ``MEDSEG_MAX_*`` environment variable
(the default when unset); error messages name the variable so the user can raise it.
"""

from __future__ import annotations

import math
import os

from medseg.errors import ConfigError

__all__ = [
    "MAX_COMPRESSION_RATIO",
    "MAX_IMAGE_BYTES",
    "MAX_PACKAGE_BYTES",
    "MAX_PACKAGE_RATIO",
    "MAX_YAML_ALIASES",
    "MAX_YAML_NODES",
    "PACKAGE_RATIO_FLOOR",
    "env_limit",
    "format_bytes",
]


def env_limit(variable: str, default: float) -> float:
    """The positive number in the environment variable ``variable``, or ``default`` when it is unset or empty.

    Raises:
        ConfigError: the variable holds something else than a positive number.
    """
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"{variable}={text!r}: not a positive number; unset it or give one (the default is {default:g})"
        )
    return value


def format_bytes(n: float) -> str:
    """``n`` bytes for a message, in binary units with three significant digits, never rounded to 0:
    ``155 bytes``, ``1.5 KiB``, ``95.4 MiB``, ``16 GiB``."""
    n = float(n)
    if abs(n) < 1024:
        return f"{n:.0f} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if abs(n) < 1024 or unit == "PiB":
            break
    return f"{n:.3g} {unit}"


#: Largest decoded image medseg allocates, in bytes (``MEDSEG_MAX_IMAGE_BYTES``, default 16 GiB).
MAX_IMAGE_BYTES = int(env_limit("MEDSEG_MAX_IMAGE_BYTES", 16 * 1024**3))
#: Largest ratio of declared (decoded) to stored bytes of compressed image data (``MEDSEG_MAX_COMPRESSION_RATIO``,
#: default 1032: the most deflate can reach, so gzip/zlib data above it cannot be genuine; bzip2 can go
#: further, raise the limit for such files).
MAX_COMPRESSION_RATIO = env_limit("MEDSEG_MAX_COMPRESSION_RATIO", 1032)
#: Largest total uncompressed size of a model package, in bytes (``MEDSEG_MAX_PACKAGE_BYTES``, default 16 GiB).
MAX_PACKAGE_BYTES = int(env_limit("MEDSEG_MAX_PACKAGE_BYTES", 16 * 1024**3))
#: Largest compression ratio of one model-package member above :data:`PACKAGE_RATIO_FLOOR`
#: (``MEDSEG_MAX_PACKAGE_RATIO``, default 100: weights and ONNX graphs compress below 2:1).
MAX_PACKAGE_RATIO = env_limit("MEDSEG_MAX_PACKAGE_RATIO", 100)
#: Members up to this many bytes unpacked are not held to :data:`MAX_PACKAGE_RATIO` (text compresses well).
PACKAGE_RATIO_FLOOR = 1024**2
#: Most aliases (``*name``) a YAML file may use (``MEDSEG_MAX_YAML_ALIASES``, default 100).
MAX_YAML_ALIASES = int(env_limit("MEDSEG_MAX_YAML_ALIASES", 100))
#: Most nodes a YAML file may expand to, aliases followed (``MEDSEG_MAX_YAML_NODES``, default 100,000).
MAX_YAML_NODES = int(env_limit("MEDSEG_MAX_YAML_NODES", 100_000))
