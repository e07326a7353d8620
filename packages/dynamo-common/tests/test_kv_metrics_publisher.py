"""WorkerMetricsPublisher: upstream's LoadEvent JSON, sent on change and coalesced, over real NATS
and through the runtime (with the `load_metrics` endpoint)."""

import asyncio
import threading
import time

import nats
import orjson
import pytest

from dynamo.llm.kv.load_metrics import ForwardPassMetrics, KvStats, WorkerStats
from dynamo.llm.kv.metrics_publisher import WorkerMetricsPublisher
from dynamo.testing import until


def metrics(used: int, waiting: int = 0) -> ForwardPassMetrics:
    return ForwardPassMetrics(
        WorkerStats(request_active_slots=1, request_total_slots=4, num_requests_waiting=waiting),
        KvStats(
            kv_active_blocks=used,
            kv_total_blocks=1000,
            gpu_cache_usage_perc=used / 1000,
            gpu_prefix_cache_hit_rate=0.0,
        ),
    )


class Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, dict]] = []

    async def send(self, subject: str, payload: bytes) -> None:
        self.messages.append((subject, orjson.loads(payload)))

    def used(self) -> list[int]:
        return [m["data"]["kv_stats"]["kv_active_blocks"] for _, m in self.messages]


async def test_a_burst_is_one_message_with_the_latest_value() -> None:
    sink = Sink()
    pub = WorkerMetricsPublisher(min_interval=0.05, refresh_interval=3600)
    pub.start(sink.send, "ns", 42)
    for i in range(1000):  # one scheduler step each, with no await between them
        pub.publish(metrics(i))
    await until(lambda: sink.messages)
    assert sink.messages == [
        (
            "namespace.ns.kv_metrics",
            {"worker_id": 42, "data": metrics(999).model_dump(mode="json")},
        )
    ]
    # The same value again is not news: nothing is sent (an idle worker is silent).
    pub.publish(metrics(999))
    await asyncio.sleep(0.2)
    assert len(sink.messages) == 1 and pub.published == 1
    await pub.close()
    with pytest.raises(RuntimeError):
        pub.publish(metrics(1))


async def test_steady_changes_are_throttled_and_the_last_one_arrives() -> None:
    sink = Sink()
    interval = 0.02
    pub = WorkerMetricsPublisher(min_interval=interval)
    pub.start(sink.send, "ns", 1)
    started = time.monotonic()
    for i in range(300):
        pub.publish(metrics(i))
        await asyncio.sleep(0.001)
    elapsed = time.monotonic() - started
    await until(lambda: sink.used() and sink.used()[-1] == 299)
    used = sink.used()
    # At most one message per interval (plus the first, sent at once, and the last).
    assert len(used) <= 2 + elapsed / interval
    assert used == sorted(used) and len(set(used)) == len(used)
    await pub.close()


async def test_an_unchanged_value_is_refreshed() -> None:
    sink = Sink()
    pub = WorkerMetricsPublisher(min_interval=0.01, refresh_interval=0.05)
    pub.start(sink.send, "ns", 5)
    await asyncio.sleep(0.2)
    assert sink.messages == []  # nothing before the first publish
    pub.publish(metrics(4))
    await until(lambda: len(sink.messages) >= 3)
    assert sink.used()[:3] == [4, 4, 4]
    await pub.close()


async def test_published_before_start_is_sent_at_start() -> None:
    sink = Sink()
    pub = WorkerMetricsPublisher()
    pub.publish(metrics(7))
    pub.start(sink.send, "ns", 3)
    await until(lambda: sink.messages)
    assert sink.used() == [7]
    with pytest.raises(RuntimeError):
        pub.start(sink.send, "ns", 3)
    await pub.close()


async def test_a_mapping_is_validated_when_sent() -> None:
    sink = Sink()
    pub = WorkerMetricsPublisher(min_interval=0)
    pub.start(sink.send, "ns", 3)
    pub.publish({"worker_stats": {"request_active_slots": 1}})  # invalid: dropped, logged
    await asyncio.sleep(0.05)
    pub.publish(metrics(5).model_dump())
    await until(lambda: sink.messages)
    assert sink.used() == [5]
    await pub.close()


async def test_publish_from_an_engine_thread() -> None:
    sink = Sink()
    pub = WorkerMetricsPublisher(min_interval=0.01)
    pub.start(sink.send, "ns", 9)

    def engine_thread() -> None:
        for i in range(500):
            pub.publish(metrics(i))

    t = threading.Thread(target=engine_thread)
    t.start()
    await asyncio.to_thread(t.join)
    await until(lambda: sink.used() and sink.used()[-1] == 499)
    await pub.close()


async def test_a_failed_send_is_counted_and_retried() -> None:
    calls: list[bytes] = []

    async def flaky(subject: str, payload: bytes) -> None:
        calls.append(payload)
        if len(calls) == 1:
            raise ConnectionError("no server")

    pub = WorkerMetricsPublisher(min_interval=0.01)
    pub.start(flaky, "ns", 1)
    pub.publish(metrics(3))
    await until(lambda: pub.published == 1)
    assert pub.failed == 1 and calls[0] == calls[1]
    await pub.close()


# -- real NATS, and the runtime -------------------------------------------------------------------


@pytest.mark.integration
async def test_over_real_nats(nats_server) -> None:
    nc = await nats.connect(nats_server.url)
    received: list[tuple[str, bytes]] = []

    async def on_msg(msg) -> None:
        received.append((msg.subject, msg.data))

    await nc.subscribe("namespace.dynamo.kv_metrics", cb=on_msg)
    await nc.flush()
    pub = WorkerMetricsPublisher(min_interval=0.02)
    pub.start(nc.publish, "dynamo", 0x1234ABCD)
    pub.publish(metrics(10, waiting=2))
    await until(lambda: received)
    for used in range(11, 60):
        pub.publish(metrics(used))
    await until(lambda: orjson.loads(received[-1][1])["data"]["kv_stats"]["kv_active_blocks"] == 59)
    subject, payload = received[0]
    assert subject == "namespace.dynamo.kv_metrics"
    assert orjson.loads(payload) == {
        "worker_id": 0x1234ABCD,
        "data": {
            "worker_stats": {
                "request_active_slots": 1,
                "request_total_slots": 4,
                "num_requests_waiting": 2,
                "data_parallel_rank": None,
            },
            "kv_stats": {
                "kv_active_blocks": 10,
                "kv_total_blocks": 1000,
                "gpu_cache_usage_perc": 0.01,
                "gpu_prefix_cache_hit_rate": 0.0,
            },
            "spec_decode_stats": None,
        },
    }
    assert len(received) < 50  # coalesced, not one message per publish
    await pub.close()
    await nc.close()


@pytest.mark.integration
async def test_create_endpoint_publishes_as_the_instance_and_serves_load_metrics(
    runtime, gather
) -> None:
    component = runtime.namespace("loadmetrics").component("backend")
    received: list[dict] = []

    async def on_msg(msg) -> None:
        received.append(orjson.loads(msg.data))

    await runtime.nats.subscribe("namespace.loadmetrics.kv_metrics", cb=on_msg)
    await runtime.nats.flush()
    pub = WorkerMetricsPublisher()
    await pub.create_endpoint(component)
    client = await component.endpoint("load_metrics").client()
    await until(lambda: client.instance_ids() == [runtime.instance_id()])
    # Nothing published yet: the endpoint answers zeros, as upstream's default.
    assert await gather(client.generate(None)) == [ForwardPassMetrics.zero().model_dump()]

    pub.publish(metrics(12, waiting=1))
    await until(lambda: received)
    assert received[0]["worker_id"] == runtime.instance_id() == pub.worker_id
    assert received[0]["data"] == metrics(12, waiting=1).model_dump(mode="json")
    assert await gather(client.generate(None)) == [metrics(12, waiting=1).model_dump()]

    await pub.close()  # leaves etcd at once, not at lease expiry
    await until(lambda: client.instance_ids() == [])
    await pub.close()  # idempotent
