"""The engine-side contract: an engine declares what it runs with (`EngineRuntime`), whoever
built the card applies it, and the worker builds the publishers it asks for and attaches them
(`dynamo.llm.kv.engine_publishers`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from dynamo.llm.engine import Engine, EngineConfig, EngineRuntime
from dynamo.llm.kv.engine_publishers import EnginePublishers, attach_publishers
from dynamo.llm.kv.load_metrics import ForwardPassMetrics
from dynamo.llm.kv.metrics_publisher import WorkerMetricsPublisher
from dynamo.llm.kv.publisher import KvEventPublisher
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.model_type import ModelType
from dynamo.llm.schema import kv_events_subject, kv_metrics_subject, kv_sync_subject
from dynamo.runtime.context import Context


class Declaring(Engine):
    """An engine that declares `declared` and keeps what it is attached."""

    model_type = ModelType.Backend

    def __init__(self, declared: EngineRuntime) -> None:
        self.declared = declared
        self.attached: list[EnginePublishers] = []

    @classmethod
    async def start(cls, config: EngineConfig) -> Declaring:
        return cls(EngineRuntime())

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        yield {"token_ids": [], "finish_reason": "length"}

    def runtime(self) -> EngineRuntime:
        return self.declared

    async def attach(self, publishers: EnginePublishers) -> None:
        self.attached.append(publishers)


def test_apply_to_puts_what_the_engine_runs_with_on_the_card() -> None:
    card = ModelDeploymentCard.for_name_only("m")
    card.context_length = 8192
    card.runtime_config["engine"] = "x"
    EngineRuntime().apply_to(card)  # nothing declared: the card's values stand
    assert (card.context_length, card.kv_cache_block_size) == (8192, 16)
    EngineRuntime(
        context_length=512, kv_cache_block_size=64, runtime_config={"max_num_seqs": 4}
    ).apply_to(card)
    assert (card.context_length, card.kv_cache_block_size) == (512, 64)
    assert card.runtime_config == {"engine": "x", "max_num_seqs": 4}


def test_a_runtime_is_checked_when_declared() -> None:
    with pytest.raises(ValueError, match="kv_cache_block_size"):
        EngineRuntime(kv_events=True)
    with pytest.raises(ValueError, match="data_parallel_size"):
        EngineRuntime(data_parallel_size=0)
    assert not EngineRuntime(kv_cache_block_size=16).publishes
    assert EngineRuntime(load_metrics=True).publishes


async def test_the_base_engine_publishes_nothing() -> None:
    class Plain(Declaring):
        attach = Engine.attach  # type: ignore[assignment]

    engine = Plain(EngineRuntime())
    assert not Engine.runtime(engine).publishes
    with pytest.raises(NotImplementedError, match="Plain publishes no KV events"):
        await engine.attach(EnginePublishers())


async def test_an_engine_that_asks_for_nothing_gets_nothing() -> None:
    engine = Declaring(EngineRuntime(context_length=64))
    assert await attach_publishers(engine, component=None, worker_id=1) is None
    assert engine.attached == []


def test_a_rank_without_a_sink_is_none() -> None:
    sink = KvEventPublisher(lambda s, p: asyncio.sleep(0), "ns", "c", 1, 4)
    publishers = EnginePublishers(kv_events=(sink,))
    assert publishers.kv_events_of_rank(0) is sink
    assert publishers.kv_events_of_rank(1) is None and publishers.kv_events_of_rank(-1) is None


@pytest.mark.integration
async def test_the_worker_builds_what_the_engine_asks_for_as_its_instance(runtime_env) -> None:
    """One KV event publisher per data-parallel rank with the engine's block size, and a load
    publisher serving `load_metrics`, all as the worker's instance; closed by the worker."""
    from dynamo.runtime import DistributedRuntime

    runtime = DistributedRuntime()
    await runtime.ensure_connected()
    try:
        await _builds_and_attaches(runtime)
    finally:
        await runtime.close()


async def _builds_and_attaches(runtime: Any) -> None:
    worker_id = await runtime.primary_lease()
    component = runtime.namespace("engpub").component("backend")
    events: list[dict] = []
    loads: list[dict] = []

    async def on_event(msg) -> None:
        events.append(orjson.loads(msg.data))

    async def on_load(msg) -> None:
        loads.append(orjson.loads(msg.data))

    await runtime.nats.subscribe(kv_events_subject("engpub", "backend"), cb=on_event)
    await runtime.nats.subscribe(kv_metrics_subject("engpub"), cb=on_load)
    await runtime.nats.flush()
    engine = Declaring(
        EngineRuntime(
            kv_cache_block_size=4, kv_events=True, data_parallel_size=2, load_metrics=True
        )
    )
    publishers = await attach_publishers(engine, component, worker_id)
    assert publishers is not None and engine.attached == [publishers]
    try:
        assert len(publishers.kv_events) == 2
        for rank, sink in enumerate(publishers.kv_events):
            assert isinstance(sink, KvEventPublisher)
            assert (sink.worker_id, sink.kv_block_size, sink.dp_rank) == (worker_id, 4, rank)
        assert isinstance(publishers.metrics, WorkerMetricsPublisher)

        publishers.kv_events[1].publish_stored(0, [1, 2, 3, 4], [4], [99])
        publishers.metrics.publish(ForwardPassMetrics.zero())
        for _ in range(500):
            if events and loads:
                break
            await asyncio.sleep(0.01)
        assert events and events[0]["worker_id"] == worker_id
        assert events[0]["event"]["dp_rank"] == 1
        assert loads and loads[0]["worker_id"] == worker_id

        # A router that starts now asks what the worker holds: rank 1 announces its block again.
        await runtime.nats.publish(kv_sync_subject("engpub", "backend"), b"")
        for _ in range(500):
            if len(events) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(events) == 2 and events[1]["event"]["dp_rank"] == 1
        assert events[1]["event"]["data"] == events[0]["event"]["data"]
    finally:
        await publishers.close()
    with pytest.raises(RuntimeError, match="closed"):
        publishers.metrics.publish({})
