"""Archive addresses: ``dicomweb+http(s)://HOST:PORT/PATH`` and ``dimse://AET@HOST:PORT``, and their credentials.

Credentials never appear in a URL medseg prints, logs or records: they come from environment
variables (``MEDSEG_DICOMWEB_TOKEN`` for a bearer token, or ``MEDSEG_DICOMWEB_USER`` and
``MEDSEG_DICOMWEB_PASSWORD``) or from a netrc file (``NETRC`` or ``~/.netrc``), and
:meth:`ArchiveURL.display` is the only form of an address that leaves this module.
"""

from __future__ import annotations

import netrc
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from medseg.errors import ConfigError

Protocol = Literal["dicomweb", "dimse"]

#: Environment variables read for DICOMweb credentials.
TOKEN_VAR = "MEDSEG_DICOMWEB_TOKEN"
USER_VAR = "MEDSEG_DICOMWEB_USER"
PASSWORD_VAR = "MEDSEG_DICOMWEB_PASSWORD"

_AET = re.compile(r"^[ -~]{1,16}$")  # DICOM AE title: 1-16 printable ASCII characters, no backslash
DIMSE_DEFAULT_PORT = 104


@dataclass(frozen=True)
class ArchiveURL:
    """A parsed archive address.

    Attributes:
        protocol: ``dicomweb`` (QIDO/WADO/STOW-RS over HTTP) or ``dimse`` (C-FIND/C-GET/C-STORE).
        host, port: where it listens.
        path: DICOMweb root path (``/dicom-web``); ``""`` for DIMSE.
        https: DICOMweb over TLS.
        aet: the archive's AE title (DIMSE; the called AE title).
    """

    protocol: Protocol
    host: str
    port: int
    path: str = ""
    https: bool = False
    aet: str = ""

    @property
    def base_url(self) -> str:
        """The HTTP(S) root of a DICOMweb service, without credentials (e.g. ``http://h:8042/dicom-web``)."""
        return f"{'https' if self.https else 'http'}://{self._netloc()}{self.path}"

    def display(self) -> str:
        """The address as medseg writes it in messages, logs, reports and provenance (never credentials)."""
        if self.protocol == "dicomweb":
            return f"dicomweb+{self.base_url}"
        return f"dimse://{self.aet}@{self._netloc()}"

    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def is_archive_url(text: str) -> bool:
    """Whether ``text`` names an archive (``dicomweb+http(s)://`` or ``dimse://``) rather than a path."""
    return text.startswith(("dicomweb+http://", "dicomweb+https://", "dimse://"))


def parse_archive_url(text: str, *, option: str = "-i") -> ArchiveURL:
    """Parse an archive address; ``option`` names the CLI option in error messages.

    Raises:
        ConfigError: not one of the two forms, a missing host, a bad port or AE title, or a user
            name/password written into the URL (they belong in the environment or a netrc file).
    """
    forms = "dicomweb+http://HOST:PORT/PATH, dicomweb+https://HOST:PORT/PATH or dimse://AET@HOST:PORT"
    if not is_archive_url(text):
        raise ConfigError(f"{option} {text!r}: not an archive address; use {forms}")
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{option} {_redact(text)}: bad port ({exc}); use {forms}") from exc
    if not parts.hostname:
        raise ConfigError(f"{option} {_redact(text)}: no host; use {forms}")
    if parts.scheme.startswith("dicomweb+"):
        if parts.password is not None or parts.username:
            raise ConfigError(
                f"{option} {_redact(text)}: credentials in the URL would end up in logs and shell history; set "
                f"{USER_VAR}/{PASSWORD_VAR} (or {TOKEN_VAR}) or use a netrc file, and drop them from the URL"
            )
        https = parts.scheme == "dicomweb+https"
        return ArchiveURL(
            "dicomweb", parts.hostname, port or (443 if https else 80), parts.path.rstrip("/"), https=https
        )
    if parts.password is not None:
        raise ConfigError(f"{option} {_redact(text)}: DIMSE has no passwords; use dimse://AET@HOST:PORT")
    aet = parts.username or ""
    if not aet or not _AET.match(aet) or "\\" in aet:
        raise ConfigError(
            f"{option} {text}: the archive's AE title (1-16 printable characters) must come before '@', "
            "e.g. dimse://ORTHANC@127.0.0.1:4242"
        )
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"{option} {text}: a DIMSE address has no path or query; use {forms}")
    return ArchiveURL("dimse", parts.hostname, port or DIMSE_DEFAULT_PORT, aet=aet)


def check_ae_title(aet: str, *, option: str = "--ae") -> str:
    """``aet`` when it is a valid DICOM AE title (1-16 printable ASCII characters, no backslash).

    Raises:
        ConfigError: it is not.
    """
    if not _AET.match(aet) or "\\" in aet or not aet.strip():
        raise ConfigError(f"{option} {aet!r}: an AE title has 1-16 printable ASCII characters (e.g. MEDSEG)")
    return aet.strip()


def _redact(text: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", text)


@dataclass(frozen=True)
class Credentials:
    """DICOMweb credentials: a bearer token, or a user name and password (never printed)."""

    token: str | None = None
    user: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never show secrets, not even in a traceback
        kind = "token" if self.token else "basic" if self.user else "none"
        return f"Credentials({kind})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secret strings, so callers can check that none was written anywhere."""
        return tuple(s for s in (self.token, self.password) if s)


def dicomweb_credentials(url: ArchiveURL) -> Credentials:
    """Credentials for ``url``: the environment first (token, then user/password), then netrc.

    Raises:
        ConfigError: only one of user/password is set, or the netrc file cannot be parsed.
    """
    token = os.environ.get(TOKEN_VAR)
    if token:
        return Credentials(token=token)
    user, password = os.environ.get(USER_VAR), os.environ.get(PASSWORD_VAR)
    if bool(user) != bool(password):
        missing = PASSWORD_VAR if user else USER_VAR
        raise ConfigError(f"{USER_VAR} and {PASSWORD_VAR} go together; {missing} is not set")
    if user and password:
        return Credentials(user=user, password=password)
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    if path.is_file():
        try:
            entry = netrc.netrc(str(path)).authenticators(url.host)
        except (netrc.NetrcParseError, OSError) as exc:
            raise ConfigError(f"{path}: cannot read the netrc file ({getattr(exc, 'msg', exc)})") from None
        if entry and entry[0] and entry[2]:
            return Credentials(user=entry[0], password=entry[2])
    return Credentials()
