"""Credentials for NATS and etcd, read from the environment under upstream Dynamo's names.

NATS (in upstream's order of precedence): `NATS_AUTH_USERNAME` + `NATS_AUTH_PASSWORD`,
`NATS_AUTH_TOKEN`, `NATS_AUTH_NKEY` (an NKey seed, or a file holding one),
`NATS_AUTH_CREDENTIALS_FILE` (a `.creds` file: JWT and seed). A user and password or a token in
`NATS_SERVER` itself (`nats://user:pass@host:4222`, `nats://token@host:4222`) work too. TLS: a
`tls://` server URL, or the server's demand, with the system's CAs, or `NATS_TLS_CA` (and
`NATS_TLS_CERT` + `NATS_TLS_KEY` for a client certificate), which are ours: upstream has no names
for them.

etcd: `ETCD_AUTH_USERNAME` + `ETCD_AUTH_PASSWORD`, and TLS with upstream's `ETCD_AUTH_CA` (the
CA that signed etcd's certificate) and `ETCD_AUTH_CLIENT_CERT` + `ETCD_AUTH_CLIENT_KEY` (a client
certificate, for an etcd started with `--client-cert-auth`), each a PEM file or PEM text as
upstream takes it. Any of them, or an `https://` endpoint in `ETCD_ENDPOINTS`, makes the channel
TLS (without `ETCD_AUTH_CA`, etcd's certificate is checked against the system's CAs). Upstream
takes either the user or the certificates; both together work here.
"""

from __future__ import annotations

import importlib.util
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class EtcdTls:
    """What a TLS channel to etcd needs, as PEM bytes: the CA to check etcd's certificate with
    (None: the system's), and this client's certificate and key (None: no client certificate)."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None


def _pem(variable: str, value: str) -> bytes:
    """A PEM setting's bytes: upstream passes the variable's text as PEM; a path to a PEM file
    (what its docs describe) works too."""
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    return Path(_file(variable, value)).read_bytes()


def etcd_options(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The user (`username`, `password`, for `aetcd.Client`) and the TLS settings (`tls`, an
    `EtcdTls`) from the environment; empty without either. An `https://` endpoint asks for TLS
    on its own (see `Etcd`)."""
    options: dict[str, Any] = {}
    user = _both(environ, "ETCD_AUTH_USERNAME", "ETCD_AUTH_PASSWORD")
    if user is not None:
        options["username"], options["password"] = user
    ca = environ.get("ETCD_AUTH_CA")
    pair = _both(environ, "ETCD_AUTH_CLIENT_CERT", "ETCD_AUTH_CLIENT_KEY")
    if ca or pair is not None:
        options["tls"] = EtcdTls(
            ca=_pem("ETCD_AUTH_CA", ca) if ca else None,
            cert=_pem("ETCD_AUTH_CLIENT_CERT", pair[0]) if pair else None,
            key=_pem("ETCD_AUTH_CLIENT_KEY", pair[1]) if pair else None,
        )
    return options


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
            # TLS: the server's certificate is not one our CA signed, or it wants a client
            # certificate we did not present (or one it does not trust).
            # (gRPC names the alerts in OpenSSL's words, Python's ssl in its own).
            "certificate_verify_failed",
            "certificate verify failed",
            "bad_certificate",
            "bad certificate",
            "certificate_required",
            "certificate required",
            "unknown_ca",
            "unknown ca",
        )
    )
