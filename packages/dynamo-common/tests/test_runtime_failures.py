"""Workers and servers going away: kill, SIGTERM, etcd and NATS restarts, unreachable servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import aetcd
import pytest

from dynamo.testing import both_planes, free_port, nats_plane, sigkill_mid_stream

pytestmark = pytest.mark.integration


@both_planes
async def test_killed_worker_fails_fast_and_is_routed_around(workers, runtime, gather):
    killed = await sigkill_mid_stream(workers, runtime)
    # Found by the missing heartbeats, well before the 10 s lease would expire.
    assert killed.seconds < 8
    assert killed.client.instance_ids() == [killed.other_id]
    for _ in range(3):
        got = await gather(killed.client.round_robin({"n": 1}))
        assert got[0]["instance"] == killed.other_id


@both_planes
async def test_request_to_a_dead_worker_is_retried_elsewhere(workers, runtime, wait_client, gather):
    victim, _ = workers.start()
    _, other_id = workers.start()
    client = await wait_client(runtime, workers.namespace, 2)
    victim.kill()
    victim.wait()
    # Its etcd key lives on until the lease expires, but nobody listens on its subject:
    # NATS answers "no responders" and the request goes to the other worker.
    for _ in range(4):
        assert (await gather(client.round_robin({"n": 1})))[0]["instance"] == other_id


@both_planes
async def test_sigterm_finishes_the_stream_and_leaves_at_once(workers, runtime, wait_client):
    proc, _ = workers.start()
    client = await wait_client(runtime, workers.namespace, 1)
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
    # Deregistered on the signal (the stream still had ~1.5 s to go), not by lease expiry.
    assert left_at is not None and left_at - sent < 1.4
    assert proc.wait(10) == 0


async def test_worker_registers_again_after_etcd_loses_everything(
    own_servers, own_runtime, workers, wait_client, gather
):
    etcd, _ = own_servers
    rt = own_runtime
    _, instance_id = workers.start(DYN_ETCD_LEASE_TTL="2")
    client = await wait_client(rt, workers.namespace, 1)  # watching through the outage
    # etcd goes away for longer than the TTL and comes back empty: the lease is gone.
    restart = asyncio.create_task(asyncio.to_thread(etcd.restart, wipe=True, down_for=3))
    await asyncio.sleep(1)
    # Meanwhile the worker keeps serving the clients that know it.
    assert len(await gather(client.round_robin({"n": 3}))) == 3
    await restart
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(aetcd.exceptions.ClientError):
            if await rt.etcd.get_prefix(f"instances/{workers.namespace}/"):
                break
        assert time.monotonic() < deadline, "the worker did not register again"
        await asyncio.sleep(0.1)
    assert client.instance_ids() == [instance_id]  # same identity (subject), new lease
    assert len(await gather(client.round_robin({"n": 3}))) == 3


@nats_plane
async def test_serving_resumes_after_nats_restart(
    own_servers, own_runtime, workers, wait_client, gather
):
    _, nats = own_servers
    workers.start()
    client = await wait_client(own_runtime, workers.namespace, 1)
    await asyncio.to_thread(nats.restart, down_for=1)
    deadline = time.monotonic() + 15
    while True:
        try:
            assert len(await gather(client.round_robin({"n": 2}))) == 2
            break
        except Exception:
            assert time.monotonic() < deadline, "serving did not resume within 15 s"
            await asyncio.sleep(0.5)


@pytest.mark.parametrize(
    ("variable", "scheme", "line"),
    [("ETCD_ENDPOINTS", "http", "cannot reach etcd"), ("NATS_SERVER", "nats", "cannot reach NATS")],
)
def test_worker_waits_for_an_unreachable_server_saying_so_once(runtime_env, variable, scheme, line):
    """Nothing listens at the configured address: one clear line naming it, retries, no crash;
    SIGTERM while waiting is a clean exit."""
    dead = f"{scheme}://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dynamo.testing.id_worker", "unreachable"],
        env={**os.environ, **runtime_env, variable: dead},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    said: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: said.extend(proc.stderr or ()), daemon=True)
    reader.start()
    try:
        # Its first attempt fails and says so (the imports before it take seconds on a busy
        # host), then it keeps retrying.
        deadline = time.monotonic() + 60
        while not any(line in text for text in said):
            assert proc.poll() is None, "".join(said)
            assert time.monotonic() < deadline, f"no '{line}' within 60 s: {''.join(said)}"
            time.sleep(0.1)
        time.sleep(3)  # several retries
        assert proc.poll() is None, "the worker gave up"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(10)
        proc.stderr.close()
    err = "".join(said)
    assert proc.returncode == 0, err
    lines = [text for text in err.splitlines() if line in text]
    assert len(lines) == 1, err
    assert dead in lines[0]
