"""Credentials for NATS and etcd, read from the environment under upstream Dynamo's names.

NATS (in upstream's order of precedence): `NATS_AUTH_USERNAME` + `NATS_AUTH_PASSWORD`,
`NATS_AUTH_TOKEN`, `NATS_AUTH_NKEY` (an NKey seed, or a file holding one),
`NATS_AUTH_CREDENTIALS_FILE` (a `.creds` file: JWT and seed). A user and password or a token in
`NATS_SERVER` itself (`nats://user:pass@host:4222`, `nats://token@host:4222`) work too. TLS: a
`tls://` server URL, or the server's demand, with the system's CAs, or `NATS_TLS_CA` (and
`NATS_TLS_CERT` + `NATS_TLS_KEY` for a client certificate), which are ours: upstream has no names
for them.

etcd: `ETCD_AUTH_USERNAME` + `ETCD_AUTH_PASSWORD`. Upstream's client-TLS settings
(`ETCD_AUTH_CA`, `ETCD_AUTH_CLIENT_CERT`, `ETCD_AUTH_CLIENT_KEY`) are refused with a clear error:
the etcd client we use (aetcd) only opens plaintext channels, and a setting silently ignored
would send credentials in the clear.
"""

from __future__ import annotations

import importlib.util
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dynamo.runtime.errors import DynamoRuntimeError


class ControlPlaneAuthError(DynamoRuntimeError):
    """Credentials for NATS or etcd are missing, unusable, or refused; the message says which
    setting to look at."""


def _both(environ: Mapping[str, str], first: str, second: str) -> tuple[str, str] | None:
    a, b = environ.get(first), environ.get(second)
    if bool(a) != bool(b):
        missing = second if a else first
        raise ControlPlaneAuthError(f"{first} and {second} go together: {missing} is not set")
    return (a, b) if a and b else None


def _file(variable: str, path: str) -> str:
    if not Path(path).is_file():
        raise ControlPlaneAuthError(f"{variable}: no such file '{path}'")
    return path


def nats_tls(environ: Mapping[str, str]) -> ssl.SSLContext | None:
    """The TLS context for NATS from `NATS_TLS_CA` / `NATS_TLS_CERT` / `NATS_TLS_KEY` (None: the
    NATS client's default, the system's CAs, used when the URL or server asks for TLS)."""
    ca = environ.get("NATS_TLS_CA")
    pair = _both(environ, "NATS_TLS_CERT", "NATS_TLS_KEY")
    if not ca and pair is None:
        return None
    context = ssl.create_default_context(cafile=_file("NATS_TLS_CA", ca) if ca else None)
    if pair is not None:
        context.load_cert_chain(_file("NATS_TLS_CERT", pair[0]), _file("NATS_TLS_KEY", pair[1]))
    return context


def nats_options(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Keyword arguments for `nats.connect` (empty without credentials in the environment)."""
    options: dict[str, Any] = {}
    user = _both(environ, "NATS_AUTH_USERNAME", "NATS_AUTH_PASSWORD")
    if user is not None:
        options["user"], options["password"] = user
    elif environ.get("NATS_AUTH_TOKEN"):
        options["token"] = environ["NATS_AUTH_TOKEN"]
    elif environ.get("NATS_AUTH_NKEY") or environ.get("NATS_AUTH_CREDENTIALS_FILE"):
        if importlib.util.find_spec("nkeys") is None:
            raise ControlPlaneAuthError(
                "NATS_AUTH_NKEY and NATS_AUTH_CREDENTIALS_FILE need the nkeys package: "
                "pip install 'nats-py[nkeys]'"
            )
        seed = environ.get("NATS_AUTH_NKEY")
        if seed:
            key = "nkeys_seed" if Path(seed).is_file() else "nkeys_seed_str"
            options[key] = seed
        else:
            creds = environ["NATS_AUTH_CREDENTIALS_FILE"]
            options["user_credentials"] = _file("NATS_AUTH_CREDENTIALS_FILE", creds)
    tls = nats_tls(environ)
    if tls is not None:
        options["tls"] = tls
    return options


def etcd_options(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Keyword arguments for `aetcd.Client` (empty without credentials in the environment)."""
    for variable in ("ETCD_AUTH_CA", "ETCD_AUTH_CLIENT_CERT", "ETCD_AUTH_CLIENT_KEY"):
        if environ.get(variable):
            raise ControlPlaneAuthError(
                f"{variable} is set, but TLS to etcd is not supported by this runtime (its etcd "
                "client speaks plaintext only): reach etcd over a private network or a TLS "
                "proxy, with ETCD_AUTH_USERNAME and ETCD_AUTH_PASSWORD"
            )
    user = _both(environ, "ETCD_AUTH_USERNAME", "ETCD_AUTH_PASSWORD")
    if user is None:
        return {}
    return {"username": user[0], "password": user[1]}


def is_auth_refusal(error: BaseException) -> bool:
    """Whether a NATS or etcd connection error is the server refusing our credentials (no use
    retrying), rather than the server being unreachable."""
    text = str(error).lower()
    return any(
        needle in text
        for needle in (
            "authorization violation",
            "authentication failed",
            "invalid user id or password",
            "user name is empty",
            "permission denied",
            "authentication expired",
        )
    )
