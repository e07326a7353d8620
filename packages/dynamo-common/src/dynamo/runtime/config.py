"""Where etcd and NATS are: `ETCD_ENDPOINTS` and `NATS_SERVER`, with upstream's defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlparse

DEFAULT_ETCD = "http://localhost:2379"
DEFAULT_NATS = "nats://localhost:4222"
LEASE_TTL_SECONDS = 10


@dataclass(frozen=True)
class RuntimeConfig:
    etcd_endpoints: tuple[str, ...]
    nats_server: str
    lease_ttl: int = LEASE_TTL_SECONDS

    @classmethod
    def from_env(cls) -> RuntimeConfig:
        etcd = os.environ.get("ETCD_ENDPOINTS") or DEFAULT_ETCD
        return cls(
            etcd_endpoints=tuple(e.strip() for e in etcd.split(",") if e.strip()),
            nats_server=os.environ.get("NATS_SERVER") or DEFAULT_NATS,
            # Upstream's 10 s; shorter only for tests of lease expiry.
            lease_ttl=int(os.environ.get("DYN_ETCD_LEASE_TTL") or LEASE_TTL_SECONDS),
        )

    def etcd_host_port(self) -> tuple[str, int]:
        """The first etcd endpoint as (host, port); the client fails over by reconnecting."""
        url = urlparse(
            self.etcd_endpoints[0]
            if "//" in self.etcd_endpoints[0]
            else f"http://{self.etcd_endpoints[0]}"
        )
        return url.hostname or "localhost", url.port or 2379
