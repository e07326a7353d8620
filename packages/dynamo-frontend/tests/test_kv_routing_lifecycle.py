"""A KV router lives as long as its model's client: its NATS subscriptions leave with it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dynamo.frontend.kv_routing import start_kv_router
from dynamo.llm.discovery import DiscoveredModel
from dynamo.llm.model_type import ModelType
from dynamo.runtime import DistributedRuntime

pytestmark = pytest.mark.integration


async def test_subscriptions_leave_with_the_models_client(runtime_env):
    runtime = DistributedRuntime()
    await runtime.ensure_connected()
    try:
        baseline = len(runtime.nats._subs)
        # The model comes, goes (its last worker left: the watcher closes its client) and comes
        # back, three times: each time a new client and a new router.
        for _ in range(3):
            client = await runtime.namespace("life").component("backend").endpoint("gen").client()
            card = SimpleNamespace(kv_cache_block_size=16)
            model = DiscoveredModel("m", ModelType.Backend, card, client, "life.backend.gen")
            engine = await start_kv_router(runtime, model, 1.0, 0.0)
            assert engine.router.block_size == 16
            assert len(runtime.nats._subs) == baseline + 2  # kv_events and kv_metrics
            await client.close()
            assert len(runtime.nats._subs) == baseline
    finally:
        await runtime.close()


async def test_runtime_close_with_a_live_router_is_clean(runtime_env):
    runtime = DistributedRuntime()
    await runtime.ensure_connected()
    client = await runtime.namespace("life2").component("backend").endpoint("gen").client()
    model = DiscoveredModel(
        "m", ModelType.Backend, SimpleNamespace(kv_cache_block_size=16), client, "p"
    )
    await start_kv_router(runtime, model, 1.0, 0.0)
    await runtime.close()  # closes the client, whose hook unsubscribes: no error
    assert client.on_close == []
