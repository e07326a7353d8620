"""Scaling workers: the frontend discovers new worker containers and spreads requests over them."""

from __future__ import annotations

import time

from containers import Cluster

REQUESTS_PER_WORKER = 4


def instances_seen_by(cluster: Cluster, ips: list[str], client) -> dict[str, int]:
    """Requests delivered to each worker (by its address) while `client` sends one request."""
    before = cluster.nats_messages_to()
    resp = cluster.chat(client, "which worker?", max_tokens=4)
    assert resp.status_code == 200, resp.text
    after = cluster.nats_messages_to()
    return {ip: after.get(ip, 0) - before.get(ip, 0) for ip in ips}


#: The spread is read from NATS's per-connection message counts, so the workers take their
#: requests over the NATS request plane (TCP, the default, passes no request through NATS).
NATS_PLANE = {"DYN_REQUEST_PLANE": "nats"}


def test_scale_one_to_three_round_robin(cluster: Cluster) -> None:
    workers = [cluster.worker(env=NATS_PLANE)]
    frontend = cluster.frontend("--router-mode", "round-robin")
    cluster.wait_healthy(frontend)
    workers += [cluster.worker(env=NATS_PLANE), cluster.worker(env=NATS_PLANE)]
    ips = [cluster.ip(w) for w in workers]
    with cluster.client(frontend) as client:
        # The frontend learns of the new workers from etcd a moment after they register: send
        # requests until each of the three has had one (bounded), then measure a clean window.
        reached: set[str] = set()
        deadline = time.monotonic() + 30
        while reached != set(ips):
            assert time.monotonic() < deadline, f"requests reached only {reached} of {ips}"
            reached |= {ip for ip, n in instances_seen_by(cluster, ips, client).items() if n}
        before = cluster.nats_messages_to()
        for _ in range(REQUESTS_PER_WORKER * len(ips)):
            resp = cluster.chat(client, "round robin", max_tokens=4)
            assert resp.status_code == 200, resp.text
        after = cluster.nats_messages_to()
    # Each request is the same number of NATS messages to its worker (the request and its
    # control messages), so an even spread of requests is an even spread of messages.
    spread = {ip: after[ip] - before[ip] for ip in ips}
    assert len(set(spread.values())) == 1, spread
    assert spread[ips[0]] >= REQUESTS_PER_WORKER, spread
