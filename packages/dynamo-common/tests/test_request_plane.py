"""The NATS request plane's endpoint server, against a real NATS server."""

from __future__ import annotations

import nats
import pytest

from dynamo.runtime import codec
from dynamo.runtime.request_plane import EndpointServer

pytestmark = pytest.mark.integration


async def test_started_server_is_subscribed_before_start_returns(nats_server):
    """`serve_endpoint` announces the instance in etcd right after `start()`: by then the NATS
    server must already route to it, or a client that sees the key at once gets "no responders"
    from a healthy worker (and routes around it for seconds: a flaky routing test showed it)."""

    async def handler(request):
        yield {"echo": request}

    worker, caller = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    try:
        server = EndpointServer(worker, "plane.backend.generate-1", handler)
        await server.start()
        # Nothing of the subscriptions waits in the client's buffer (NATS-py only queues SUB)...
        assert worker.pending_data_size == 0
        # ...and another connection's request, sent at once, is answered.
        reply = await caller.request(
            "plane.backend.generate-1", codec.encode_request("r1", {"n": 1}), timeout=5
        )
        assert reply.data
        await server.drain(0)
    finally:
        await worker.close()
        await caller.close()
