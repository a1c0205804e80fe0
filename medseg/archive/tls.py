"""TLS for DIMSE: client and server ``ssl.SSLContext`` from PEM files (``--tls-cert/--tls-key/--tls-ca``)."""

from __future__ import annotations

import ssl
from pathlib import Path

from medseg.errors import ConfigError


def tls_context(cert: Path | None, key: Path | None, ca: Path | None, *, server: bool) -> ssl.SSLContext | None:
    """An ``ssl.SSLContext``, or None when no TLS file is given.

    Client (``server=False``): verifies the peer against ``ca`` (the system's CAs when None) and
    presents ``cert``/``key`` when given. Server: presents ``cert``/``key`` (required) and, with
    ``ca``, requires and verifies client certificates.

    Raises:
        ConfigError: a file is missing or unreadable, or a server lacks its certificate/key.
    """
    if cert is None and key is None and ca is None:
        return None
    for option, path in (("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{option} {path}: no such file; give a PEM file")
    if (cert is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key go together; give both (PEM certificate and its private key)")
    try:
        if server:
            if cert is None:
                raise ConfigError("a TLS listener needs --tls-cert and --tls-key (its certificate and private key)")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if ca is not None:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(cafile=str(ca))
        else:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert is not None and key is not None:
            ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS files cannot be used ({exc}); check --tls-cert/--tls-key/--tls-ca") from None
    return ctx
