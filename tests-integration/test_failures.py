"""Failures across containers: a worker killed mid-stream, and NATS restarted under the stack."""

from __future__ import annotations

import json
import time

import httpx
from containers import MODEL, Cluster

import docker

# echo_core sends one token every this many milliseconds: a stream long enough to kill mid-way.
SLOW_ECHO = {"DYN_TOKEN_ECHO_DELAY_MS": "300"}
RESUME_WITHIN_S = 15.0
# The runtime's default lease TTL (DYN_ETCD_LEASE_TTL), which the workers here keep.
LEASE_TTL_S = 10.0


def test_worker_killed_mid_stream_ends_the_stream_with_an_error(cluster: Cluster) -> None:
    worker = cluster.worker(env=SLOW_ECHO)
    frontend = cluster.frontend()
    cluster.wait_healthy(frontend)
    body = {
        "model": MODEL,
        "stream": True,
        "max_tokens": 500,
        "messages": [{"role": "user", "content": "a long stream " * 20}],
    }
    events: list[dict] = []
    # The read timeout is the "never a hang" bound: a stream that stops without ending fails.
    with (
        cluster.client(frontend, timeout=45) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as resp,
    ):
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            events.append(json.loads(line.removeprefix("data: ")))
            if len(events) == 2:
                worker.get_wrapped_container().kill()
    assert len(events) > 2, events
    last = events[-1]
    assert "error" in last, f"the stream ended without an error event: {last}"
    finished = [c["finish_reason"] for e in events[:-1] for c in e.get("choices", [])]
    assert "stop" not in finished and "length" not in finished, events


def test_serving_resumes_after_nats_restart(cluster: Cluster) -> None:
    # Pinned to the NATS request plane: over TCP (the default) serving never stops with NATS.
    cluster.worker(env={"DYN_REQUEST_PLANE": "nats"})
    frontend = cluster.frontend()
    cluster.wait_healthy(frontend)
    with cluster.client(frontend, timeout=10) as client:
        assert cluster.chat(client, "before", max_tokens=4).status_code == 200
        cluster.nats.get_wrapped_container().restart(timeout=10)
        restarted = time.monotonic()
        while True:
            try:
                resp = cluster.chat(client, "after", max_tokens=4)
                if resp.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            waited = time.monotonic() - restarted
            assert waited < RESUME_WITHIN_S, f"no answer {waited:.0f}s after NATS restarted"
            time.sleep(0.5)


def listed_models(client: httpx.Client) -> list[str]:
    return [m["id"] for m in client.get("/v1/models").json()["data"]]


def wait_for_models(client: httpx.Client, expected: list[str], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while (models := listed_models(client)) != expected:
        assert time.monotonic() < deadline, f"/v1/models is {models}, not {expected}"
        time.sleep(0.5)


def test_disconnected_worker_leaves_within_the_lease_ttl_and_rejoins(cluster: Cluster) -> None:
    worker = cluster.worker()
    frontend = cluster.frontend()
    cluster.wait_healthy(frontend)
    network = docker.from_env().networks.get(cluster.network.name)
    with cluster.client(frontend, timeout=10) as client:
        assert listed_models(client) == [MODEL]
        network.disconnect(worker.get_wrapped_container().id)
        # Cut off, the worker cannot renew its lease: etcd drops its keys once the TTL runs out,
        # and the frontend's watch removes the model (a second of slack for the watch event).
        wait_for_models(client, [], within_s=LEASE_TTL_S + 2)
        network.connect(worker.get_wrapped_container().id)
        # Back on the network, the worker takes a new lease and registers again.
        wait_for_models(client, [MODEL], within_s=30)
        assert cluster.chat(client, "back", max_tokens=4).status_code == 200
