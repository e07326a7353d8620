"""Where etcd and NATS are: `ETCD_ENDPOINTS` and `NATS_SERVER`, with upstream's defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlparse

DEFAULT_ETCD = "http://localhost:2379"
DEFAULT_NATS = "nats://localhost:4222"
LEASE_TTL_SECONDS = 10


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

    @classmethod
    def from_env(cls) -> RuntimeConfig:
        etcd = os.environ.get("ETCD_ENDPOINTS") or DEFAULT_ETCD
        endpoints = tuple(e.strip() for e in etcd.split(",") if e.strip())
        return cls(
            etcd_endpoints=endpoints or (DEFAULT_ETCD,),
            nats_server=os.environ.get("NATS_SERVER") or DEFAULT_NATS,
            # Upstream's 10 s; shorter only for tests of lease expiry.
            lease_ttl=int(os.environ.get("DYN_ETCD_LEASE_TTL") or LEASE_TTL_SECONDS),
        )

    def etcd_host_port(self) -> tuple[str, int]:
        """The first etcd endpoint as (host, port)."""
        return host_port(self.etcd_endpoints[0], 2379)
