"""The mocker's load metrics: handed to a publisher every step, and, as a distributed worker,
published on NATS (`namespace.{ns}.kv_metrics`) with numbers that follow the load."""

import asyncio
import time

import orjson
import pytest

from dynamo.engines.mocker import MockerEngine
from dynamo.llm import Context, EngineConfig
from dynamo.llm.kv.engine_publishers import EnginePublishers, attach_publishers
from dynamo.testing import until

FAST = {"block_size": 4, "num_gpu_blocks": 64, "seed": 1}


def request(tokens: list[int], max_tokens: int) -> dict:
    return {"token_ids": tokens, "stop_conditions": {"max_tokens": max_tokens}}


async def consume(stream) -> None:
    async for _ in stream:
        pass


class Recording:
    """A `MetricsSink` that keeps every report."""

    def __init__(self) -> None:
        self.reports: list[dict] = []

    def publish(self, metrics: dict) -> None:
        self.reports.append(metrics)


async def test_every_step_reports_and_the_last_report_is_idle() -> None:
    sink = Recording()
    config = EngineConfig(model_name="m", extra_engine_args={**FAST, "speedup_ratio": 0})
    engine = await MockerEngine.start(config)
    await engine.attach(EnginePublishers(metrics=sink))
    assert sink.reports[0]["kv_stats"]["kv_active_blocks"] == 0  # reported when attached
    prompt = list(range(10))
    await asyncio.gather(
        *(consume(engine.generate(request(prompt, 8), Context())) for _ in range(3))
    )
    await until(lambda: not engine.scheduler.has_work())
    await until(lambda: sink.reports[-1]["worker_stats"]["request_active_slots"] == 0)
    busy = [r for r in sink.reports if r["kv_stats"]["kv_active_blocks"] > 0]
    assert busy and max(r["worker_stats"]["request_active_slots"] for r in busy) == 3
    last = sink.reports[-1]
    assert last["kv_stats"]["kv_active_blocks"] == 0
    assert last["worker_stats"]["num_requests_waiting"] == 0
    assert last["kv_stats"]["gpu_prefix_cache_hit_rate"] > 0  # 2 of 3 prompts found 2 blocks
    await engine.close()
    assert engine.metrics_publisher is None


@pytest.mark.integration
async def test_a_distributed_mocker_publishes_its_load(runtime_env) -> None:
    from dynamo.runtime import DistributedRuntime

    runtime = DistributedRuntime()
    await runtime.ensure_connected()
    await runtime.primary_lease()
    reports: list[dict] = []

    async def on_msg(msg) -> None:
        reports.append(orjson.loads(msg.data))

    await runtime.nats.subscribe("namespace.mockload.kv_metrics", cb=on_msg)
    await runtime.nats.flush()
    endpoint = runtime.namespace("mockload").component("backend").endpoint("generate")
    # Upstream's timing (a decode step takes ~6 ms): the load lasts until the test ends it.
    config = EngineConfig(
        model_name="m",
        distributed=True,
        extra_engine_args={**FAST, "num_gpu_blocks": 1024, "speedup_ratio": 1, "max_num_seqs": 1},
    )
    started = time.monotonic()
    engine = await MockerEngine.start(config)
    # As the worker does: it builds the publishers, as its own instance, and hands them over.
    publishers = await attach_publishers(engine, endpoint.component, runtime.instance_id())
    assert publishers is not None and publishers.metrics is engine.metrics_publisher
    tasks: list[asyncio.Task] = []
    try:
        # Idle at start: total blocks and slots, nothing in use.
        await until(lambda: reports)
        first = reports[0]
        assert first["worker_id"] == runtime.instance_id()
        assert first["data"]["kv_stats"]["kv_total_blocks"] == 1024
        assert first["data"]["worker_stats"]["request_total_slots"] == 1
        assert first["data"]["kv_stats"]["kv_active_blocks"] == 0

        # Load: one long request runs, two wait for its slot.
        for i in range(3):
            stream = engine.generate(request([i + 1] * 8, 100_000), Context())
            tasks.append(asyncio.create_task(consume(stream)))

        def loaded() -> bool:
            stats = reports[-1]["data"]
            return (
                stats["worker_stats"]["num_requests_waiting"] == 2
                and stats["worker_stats"]["request_active_slots"] == 1
                and stats["kv_stats"]["kv_active_blocks"] >= 3
            )

        await until(loaded)
        assert reports[-1]["data"]["kv_stats"]["gpu_cache_usage_perc"] > 0

        # The load goes away: the last report says so.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

        def idle() -> bool:
            stats = reports[-1]["data"]
            return (
                stats["worker_stats"]["num_requests_waiting"] == 0
                and stats["worker_stats"]["request_active_slots"] == 0
                and stats["kv_stats"]["kv_active_blocks"] == 0
            )

        await until(idle)
        # Coalesced: at most one message per 100 ms (and the first), not one per step.
        assert len(reports) <= 2 + (time.monotonic() - started) / 0.1
    finally:
        for task in tasks:
            task.cancel()
        await runtime.close()  # closes the metrics publisher (a runtime closer) first
        await engine.close()
        await publishers.close()
