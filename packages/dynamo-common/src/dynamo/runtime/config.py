"""The runtime's settings from the environment, with upstream's names and defaults: where etcd
and NATS are (`ETCD_ENDPOINTS`, `NATS_SERVER`), and which request plane a worker serves on
(`DYN_REQUEST_PLANE`: `tcp` or `nats`, with `DYN_TCP_RPC_HOST`, `DYN_TCP_RPC_PORT` and
`DYN_TCP_MAX_MESSAGE_SIZE` for TCP), and where discovery lives (`DYN_DISCOVERY_BACKEND`: `etcd`
or `file`, with `DYN_FILE_KV` its directory), and how long a worker that is told to stop may take
to finish its streams before it hands them over (`DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlparse

from dynamo.runtime.errors import RuntimeConfigError

DEFAULT_ETCD = "http://localhost:2379"
DEFAULT_NATS = "nats://localhost:4222"
LEASE_TTL_SECONDS = 10
REQUEST_PLANES = ("tcp", "nats")
DISCOVERY_BACKENDS = ("etcd", "file")
DEFAULT_REQUEST_PLANE = "tcp"
DEFAULT_TCP_MAX_MESSAGE = 32 * 1024 * 1024
#: Upstream's default (release builds): Kubernetes' own grace period is 30 s too.
DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT = 30.0


def _check_address(variable: str, url: str) -> None:
    try:
        urlparse(url if "//" in url else f"//{url}").port  # noqa: B018 - parsing is the check
    except ValueError as e:
        raise RuntimeConfigError(f"{variable}: '{url}' is not host:port ({e})") from None


def _whole_number(variable: str, default: int, least: int) -> int:
    text = os.environ.get(variable) or str(default)
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise RuntimeConfigError(f"{variable}={text!r} is not a whole number of at least {least}")
    return value


def _seconds(variable: str, default: float) -> float:
    text = os.environ.get(variable) or str(default)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise RuntimeConfigError(f"{variable}={text!r} is not a number of seconds of at least 0")
    return value


def host_port(url: str, default_port: int) -> tuple[str, int]:
    """`http://host:port`, `host:port` or `host` as (host, port)."""
    parsed = urlparse(url if "//" in url else f"//{url}")
    return parsed.hostname or "localhost", parsed.port or default_port


@dataclass(frozen=True)
class RuntimeConfig:
    """The runtime's settings, read from the environment as upstream's are."""

    etcd_endpoints: tuple[str, ...]
    nats_server: str
    lease_ttl: int = LEASE_TTL_SECONDS
    #: How this process's endpoints take requests; callers follow each instance's record.
    request_plane: str = DEFAULT_REQUEST_PLANE
    #: The TCP request plane's address: None is the interface that reaches etcd; port 0 is any.
    tcp_host: str | None = None
    tcp_port: int = 0
    tcp_max_message: int = DEFAULT_TCP_MAX_MESSAGE
    #: `DYN_TCP_RPC_TOKEN`: a shared secret a caller must present on each TCP connection.
    tcp_token: str | None = None
    #: Where instances and models are announced: etcd, or a directory on this host (`file`).
    discovery_backend: str = "etcd"
    #: The `file` backend's directory (DYN_FILE_KV); None: `dynamo_store_kv` in the temp dir.
    file_kv_root: str | None = None
    #: NATS_SERVER was set: KV events (and anything else that asks) may use NATS even where
    #: neither the request plane nor discovery needs it.
    nats_configured: bool = True
    #: A worker told to stop (SIGTERM) finishes its in-flight streams for at most this long,
    #: then hands the rest over: each ends with the "worker stopped" error (503), which the
    #: caller's request migration resumes on another worker. 0 hands them over at once.
    graceful_shutdown_timeout: float = DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT

    @property
    def needs_nats(self) -> bool:
        """Whether this process connects to NATS at start: for the NATS request plane, for
        the model card files (in NATS's object store alongside etcd), or when NATS_SERVER is set.
        With file discovery and the TCP plane nothing else needs it."""
        return (
            self.request_plane == "nats" or self.discovery_backend == "etcd" or self.nats_configured
        )

    @classmethod
    def from_env(cls) -> RuntimeConfig:
        """The settings, each checked here: `RuntimeConfigError` names the one that is unusable
        (a traceback from deep inside a client would not)."""
        etcd = os.environ.get("ETCD_ENDPOINTS") or DEFAULT_ETCD
        endpoints = tuple(e.strip() for e in etcd.split(",") if e.strip()) or (DEFAULT_ETCD,)
        for endpoint in endpoints:
            _check_address("ETCD_ENDPOINTS", endpoint)
        nats = os.environ.get("NATS_SERVER") or DEFAULT_NATS
        for server in nats.split(","):
            _check_address("NATS_SERVER", server.strip())
        # Upstream's 10 s; shorter only for tests of lease expiry.
        ttl_text = os.environ.get("DYN_ETCD_LEASE_TTL") or str(LEASE_TTL_SECONDS)
        try:
            lease_ttl = int(ttl_text)
        except ValueError:
            lease_ttl = 0
        if lease_ttl < 1:
            raise RuntimeConfigError(
                f"DYN_ETCD_LEASE_TTL={ttl_text!r} is not a whole number of seconds of at least 1"
            )
        backend = (os.environ.get("DYN_DISCOVERY_BACKEND") or "etcd").lower()
        if backend not in DISCOVERY_BACKENDS:
            raise RuntimeConfigError(
                f"DYN_DISCOVERY_BACKEND={backend!r}: discovery is one of "
                f"{', '.join(DISCOVERY_BACKENDS)}"
            )
        plane = (os.environ.get("DYN_REQUEST_PLANE") or DEFAULT_REQUEST_PLANE).lower()
        if plane not in REQUEST_PLANES:
            raise RuntimeConfigError(
                f"DYN_REQUEST_PLANE={plane!r}: the request plane is one of {', '.join(REQUEST_PLANES)}"
            )
        return cls(
            etcd_endpoints=endpoints,
            nats_server=nats,
            lease_ttl=lease_ttl,
            request_plane=plane,
            tcp_host=os.environ.get("DYN_TCP_RPC_HOST") or None,
            tcp_port=_whole_number("DYN_TCP_RPC_PORT", 0, 0),
            tcp_max_message=_whole_number("DYN_TCP_MAX_MESSAGE_SIZE", DEFAULT_TCP_MAX_MESSAGE, 1),
            tcp_token=os.environ.get("DYN_TCP_RPC_TOKEN") or None,
            discovery_backend=backend,
            file_kv_root=os.environ.get("DYN_FILE_KV") or None,
            nats_configured=bool(os.environ.get("NATS_SERVER")),
            graceful_shutdown_timeout=_seconds(
                "DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT", DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT
            ),
        )

    def etcd_host_port(self) -> tuple[str, int]:
        """The first etcd endpoint as (host, port)."""
        return host_port(self.etcd_endpoints[0], 2379)
