"""Distributed-runtime helpers for tests: worker processes that answer with their instance id,
handlers served in the test's own process, clients that wait for instances, and the request-plane
marks. Real etcd and NATS (the plugin's fixtures) underneath, never mocks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from dynamo.runtime import Client, DistributedRuntime, Endpoint

#: The test runs over each request plane (the `request_plane` fixture, parametrized indirectly).
both_planes = pytest.mark.parametrize("request_plane", ["nats", "tcp"], indirect=True)

#: The test is about the NATS request plane itself.
nats_plane = pytest.mark.parametrize("request_plane", ["nats"], indirect=True)

#: The test is about the TCP request plane itself.
tcp_plane = pytest.mark.parametrize("request_plane", ["tcp"], indirect=True)


class Workers:
    """`python -m dynamo.testing.id_worker` subprocesses for one test, all in one namespace."""

    def __init__(self, namespace: str, env: dict[str, str]):
        self.namespace = namespace
        self.env = {**os.environ, **env}
        self.procs: list[subprocess.Popen] = []

    def start(self, **env: str) -> tuple[subprocess.Popen, int]:
        """Start one worker; returns it and its instance id once it is serving."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "dynamo.testing.id_worker", self.namespace],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        word, instance = proc.stdout.readline().split()
        assert word == "ready"
        return proc, int(instance, 16)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


async def client_for(
    rt: DistributedRuntime, namespace: str, count: int, within: float = 15.0
) -> Client:
    """A client of `{namespace}.backend.generate` once it sees `count` instances."""
    client = await rt.namespace(namespace).component("backend").endpoint("generate").client()
    deadline = time.monotonic() + within
    while len(client.instance_ids()) < count:
        assert time.monotonic() < deadline, f"saw {client.instance_ids()}, wanted {count} instances"
        await asyncio.sleep(0.05)
    return client


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    """Every item of a response stream, as a list."""
    return [item async for item in stream]


def serve(
    rt: DistributedRuntime, namespace: str, handler: Callable[..., Any]
) -> tuple[Endpoint, asyncio.Task[None]]:
    """Serve `handler` as `{namespace}.backend.generate` from the test's own process; returns
    the endpoint and the serving task (`rt.shutdown()`, then await it, to end it)."""
    endpoint = rt.namespace(namespace).component("backend").endpoint("generate")
    return endpoint, asyncio.create_task(endpoint.serve_endpoint(handler))


def endless_counter(cancelled: asyncio.Event) -> Callable[[Any], AsyncIterator[int]]:
    """A handler that counts for about 100 s, 10 ms a number, and sets `cancelled` when its
    stream is cancelled: for tests of a caller that goes away."""

    async def handler(request: Any) -> AsyncIterator[int]:
        try:
            for i in range(10_000):
                await asyncio.sleep(0.01)
                yield i
        except asyncio.CancelledError:
            cancelled.set()
            raise

    return handler


@dataclass
class KilledMidStream:
    """What `sigkill_mid_stream` saw: the seconds from the SIGKILL to the stream's failure."""

    seconds: float
    client: Client
    victim_id: int
    other_id: int


async def sigkill_mid_stream(workers: Workers, runtime: DistributedRuntime) -> KilledMidStream:
    """Two workers; a long stream from the first, SIGKILLed after its first item; waits until
    the stream fails with `InstanceGoneError` (anything else fails the test)."""
    from dynamo.runtime import InstanceGoneError

    victim, victim_id = workers.start()
    _, other_id = workers.start()
    client = await client_for(runtime, workers.namespace, 2)
    stream = client.direct({"n": 10_000, "delay": 0.01}, victim_id)
    await anext(stream)
    victim.kill()
    start = time.monotonic()
    with pytest.raises(InstanceGoneError):
        async for _ in stream:
            pass
    return KilledMidStream(time.monotonic() - start, client, victim_id, other_id)
