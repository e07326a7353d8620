"""The cluster the `out=dyn` drills run against: etcd, NATS, echo_core workers and a frontend."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from _common import default_model, http_get, model_listed, stop, wait_until

from dynamo.testing.servers import free_port

CLI = [sys.executable, "-m", "dynamo.frontend.cli"]
MODEL = "drill"


@dataclass
class Cluster:
    """etcd, NATS, echo_core workers and an `out=dyn` frontend on loopback."""

    env: dict[str, str]
    url: str
    etcd: Any
    nats: Any
    workers: list[subprocess.Popen] = field(default_factory=list)
    others: list[subprocess.Popen] = field(default_factory=list)  # the frontend

    def start_worker(self) -> subprocess.Popen:
        cmd = [*CLI, "in=dyn://drill.backend.generate", "out=echo_core", default_model()]
        proc = subprocess.Popen([*cmd, "--model-name", MODEL], env=self.env)
        self.workers.append(proc)
        return proc

    def instances(self) -> int:
        body = http_get(f"{self.url}/health")
        if body is None:
            return 0
        return int(json.loads(body).get("models", {}).get(MODEL, {}).get("workers", 0))

    async def wait_instances(self, count: int, what: str, timeout: float) -> None:  # noqa: ASYNC109
        await asyncio.to_thread(
            wait_until, lambda: self.instances() == count, self.workers, what, timeout
        )

    def metric(self, name: str) -> float:
        """A frontend counter for the drill's model (0 when absent)."""
        text = (http_get(f"{self.url}/metrics") or b"").decode()
        prefix = f'{name}{{model="{MODEL}"}} '
        return sum(
            float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)
        )


@contextlib.contextmanager
def cluster(args: argparse.Namespace, frontend_flags: Sequence[str] = ()) -> Iterator[Cluster]:
    """`args.workers` workers pacing tokens at `args.delay_ms`, with `args.worker_env` (NAME=VALUE
    strings, where the drill has them) in their environment."""
    from dynamo.testing import EtcdServer, NatsServer

    with EtcdServer() as etcd, NatsServer() as nats:
        env = {
            **os.environ,
            "ETCD_ENDPOINTS": etcd.url,
            "NATS_SERVER": nats.url,
            "DYN_LOG": "warn",
            "DYN_TOKEN_ECHO_DELAY_MS": str(args.delay_ms),
            **dict(kv.split("=", 1) for kv in getattr(args, "worker_env", None) or ()),
        }
        port = free_port()
        c = Cluster(env, f"http://127.0.0.1:{port}", etcd, nats)
        for _ in range(args.workers):
            c.start_worker()
        front = [*CLI, "in=http", "out=dyn", "--http-host", "127.0.0.1", "--http-port", str(port)]
        c.others.append(subprocess.Popen([*front, *frontend_flags], env=env))
        try:
            wait_until(lambda: model_listed(c.url, MODEL), c.others, "frontend", 180)
            wait_until(lambda: c.instances() == args.workers, c.workers, "workers", 180)
            yield c
        finally:
            stop([*c.workers, *c.others])
