"""The distributed runtime against real etcd and NATS: discovery, routing, failures, outages."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dynamo.runtime import DistributedRuntime, InstanceGoneError, NoInstancesError, RemoteError
from dynamo.runtime.testing import EtcdServer, NatsServer

pytestmark = pytest.mark.integration

WORKER = Path(__file__).parent / "workers" / "id_worker.py"


class Workers:
    """Worker subprocesses for one test, all in one namespace."""

    def __init__(self, namespace: str, env: dict[str, str]):
        self.namespace = namespace
        self.env = {**os.environ, **env}
        self.procs: list[subprocess.Popen] = []

    def start(self) -> tuple[subprocess.Popen, int]:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), self.namespace],
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        word, instance = proc.stdout.readline().split()
        assert word == "ready"
        self.procs.append(proc)
        return proc, int(instance, 16)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(request, runtime_env):
    w = Workers(request.node.name.replace("[", "_").replace("]", "_"), runtime_env)
    yield w
    w.close()


@pytest.fixture
async def runtime(runtime_env):
    rt = DistributedRuntime()
    await rt.ensure_connected()
    yield rt
    await rt.close()


async def client_for(rt: DistributedRuntime, namespace: str, count: int):
    client = await rt.namespace(namespace).component("backend").endpoint("generate").client()
    deadline = time.monotonic() + 15
    while len(client.instance_ids()) < count:
        assert time.monotonic() < deadline, f"saw {client.instance_ids()}, wanted {count} instances"
        await asyncio.sleep(0.05)
    return client


async def collect(stream) -> list:
    return [item async for item in stream]


async def test_round_robin_spreads_evenly(workers, runtime):
    workers.start()
    workers.start()
    client = await client_for(runtime, workers.namespace, 2)
    seen = [(await collect(client.round_robin({"n": 1})))[0]["instance"] for _ in range(6)]
    assert set(seen) == set(client.instance_ids())
    assert all(a != b for a, b in itertools.pairwise(seen))


async def test_random_and_direct(workers, runtime):
    workers.start()
    workers.start()
    client = await client_for(runtime, workers.namespace, 2)
    seen = {(await collect(client.random({"n": 1})))[0]["instance"] for _ in range(30)}
    assert seen == set(client.instance_ids())
    target = client.instance_ids()[1]
    direct = [(await collect(client.direct({"n": 1}, target)))[0]["instance"] for _ in range(5)]
    assert direct == [target] * 5
    # upstream's spelling: await the call, then iterate
    stream = await client.generate({"n": 3})
    assert [item["i"] async for item in stream] == [0, 1, 2]


async def test_streams_in_order_and_ends_explicitly(workers, runtime):
    workers.start()
    client = await client_for(runtime, workers.namespace, 1)
    items = await collect(client.round_robin({"n": 50}))
    assert [item["i"] for item in items] == list(range(50))


async def test_no_instances(runtime):
    client = (
        await runtime.namespace("nobody-home").component("backend").endpoint("generate").client()
    )
    with pytest.raises(NoInstancesError):
        await collect(client.round_robin({}))


async def test_cancellation_reaches_the_handler(runtime):
    stopped = asyncio.Event()

    async def handler(request, context):
        for i in range(10_000):
            if context.is_stopped():
                stopped.set()
                return
            await asyncio.sleep(0.01)
            yield i

    endpoint = runtime.namespace("cancel").component("backend").endpoint("generate")
    serving = asyncio.create_task(endpoint.serve_endpoint(handler))
    client = await client_for(runtime, "cancel", 1)
    stream = client.round_robin({})
    assert await anext(stream) == 0
    await stream.aclose()
    await asyncio.wait_for(stopped.wait(), 5)
    runtime.shutdown()
    await serving


async def test_handler_errors_travel_as_errors(runtime):
    async def handler(request):
        yield 1
        raise ValueError("the engine broke")

    endpoint = runtime.namespace("errors").component("backend").endpoint("generate")
    serving = asyncio.create_task(endpoint.serve_endpoint(handler))
    client = await client_for(runtime, "errors", 1)
    got = []
    with pytest.raises(RemoteError, match="the engine broke"):
        async for item in client.round_robin({}):
            got.append(item)
    assert got == [1]
    runtime.shutdown()
    await serving


async def test_killed_worker_fails_fast_and_is_routed_around(workers, runtime):
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
    assert time.monotonic() - start < 5  # the heartbeat stops; no waiting for the lease to expire
    assert client.instance_ids() == [other_id]
    for _ in range(3):
        assert (await collect(client.round_robin({"n": 1})))[0]["instance"] == other_id


async def test_request_to_a_dead_worker_is_retried_elsewhere(workers, runtime):
    victim, _ = workers.start()
    _, other_id = workers.start()
    client = await client_for(runtime, workers.namespace, 2)
    victim.kill()
    victim.wait()
    # Its etcd key lives on until the lease expires, but nobody listens on its subject:
    # the request fails fast and goes to the other worker, whichever was picked first.
    for _ in range(4):
        assert (await collect(client.round_robin({"n": 1})))[0]["instance"] == other_id


async def test_sigterm_finishes_the_stream_and_leaves_at_once(workers, runtime):
    proc, _ = workers.start()
    client = await client_for(runtime, workers.namespace, 1)
    stream = client.round_robin({"n": 30, "delay": 0.05})
    items = [await anext(stream)]
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    left_at = None
    async for item in stream:
        items.append(item)
        if left_at is None and not client.instance_ids():
            left_at = time.monotonic()
    assert [i["i"] for i in items] == list(range(30))
    assert left_at is not None and left_at - sent < 1.0
    assert proc.wait(10) == 0


async def test_two_clients_at_once(workers, runtime_env):
    workers.start()
    a, b = DistributedRuntime(), DistributedRuntime()
    await a.ensure_connected()
    await b.ensure_connected()
    try:
        ca = await client_for(a, workers.namespace, 1)
        cb = await client_for(b, workers.namespace, 1)
        ra, rb = await asyncio.gather(
            collect(ca.round_robin({"n": 20})), collect(cb.round_robin({"n": 20}))
        )
        assert len(ra) == len(rb) == 20
    finally:
        await a.close()
        await b.close()


@contextlib.asynccontextmanager
async def own_servers(monkeypatch):
    etcd, nats = EtcdServer(), NatsServer()
    etcd.start()
    nats.start()
    monkeypatch.setenv("ETCD_ENDPOINTS", etcd.url)
    monkeypatch.setenv("NATS_SERVER", nats.url)
    try:
        yield etcd, nats
    finally:
        etcd.close()
        nats.close()


async def test_worker_registers_again_after_etcd_loses_everything(monkeypatch):
    async with own_servers(monkeypatch) as (etcd, _):
        w = Workers(
            "etcd-restart",
            {
                "ETCD_ENDPOINTS": etcd.url,
                "NATS_SERVER": os.environ["NATS_SERVER"],
                "DYN_ETCD_LEASE_TTL": "2",
            },
        )
        try:
            _, instance_id = w.start()
            probe = DistributedRuntime()
            await probe.ensure_connected()
            await client_for(probe, "etcd-restart", 1)
            await probe.close()
            etcd.stop()
            shutil.rmtree(etcd.data_dir / "etcd")  # etcd comes back empty: the lease is gone
            await asyncio.sleep(3)
            etcd.start()
            rt = DistributedRuntime()
            await rt.ensure_connected()
            try:
                client = await client_for(rt, "etcd-restart", 1)  # waits up to 15 s
                assert client.instance_ids() == [instance_id]  # same identity, new lease
                assert len(await collect(client.round_robin({"n": 3}))) == 3
            finally:
                await rt.close()
        finally:
            w.close()


async def test_serving_resumes_after_nats_restart(monkeypatch):
    async with own_servers(monkeypatch) as (etcd, nats):
        w = Workers("nats-restart", {"ETCD_ENDPOINTS": etcd.url, "NATS_SERVER": nats.url})
        rt = DistributedRuntime()
        try:
            w.start()
            await rt.ensure_connected()
            client = await client_for(rt, "nats-restart", 1)
            nats.stop()
            await asyncio.sleep(1)
            nats.start()
            deadline = time.monotonic() + 15
            while True:
                try:
                    assert len(await collect(client.round_robin({"n": 2}))) == 2
                    break
                except (InstanceGoneError, OSError, Exception):
                    assert time.monotonic() < deadline, "serving did not resume within 15 s"
                    await asyncio.sleep(0.5)
        finally:
            await rt.close()
            w.close()
