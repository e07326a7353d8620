"""What a distributed SGLang worker tells routers: its KV cache events and its load, fed to the
publishers the worker attached (`dynamo.llm.kv.engine_publishers`).

- KV events: SGLang publishes them itself (its ZMQ publisher, `kv_events_config`; rank r of
  data parallelism on port + r); one `ZmqKvEventRelay` per rank republishes them in our format
  (`dynamo.llm.kv.zmq_events`) through that rank's publisher, hashed with the page size as the
  block size (the engine declares it as its KV block size).
- Load: with KV events and metrics on, SGLang's scheduler pushes a `KvMetrics` after each step
  to `port_args.metrics_ipc_name`; we pull them and publish upstream's `ForwardPassMetrics`.
  SGLang counts KV capacity in tokens; routers count blocks, so both are divided by the page
  size, as upstream's SGLang worker does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from dynamo.llm.kv.engine_publishers import EnginePublishers

log = logging.getLogger(__name__)


def forward_pass_metrics(metrics: Any, page_size: int) -> dict[str, Any]:
    """Upstream's `ForwardPassMetrics` for one SGLang `KvMetrics` (read by attribute)."""
    return {
        "worker_stats": {
            "data_parallel_rank": int(metrics.data_parallel_rank or 0),
            "request_active_slots": int(metrics.request_active_slots),
            "request_total_slots": int(metrics.request_total_slots),
            "num_requests_waiting": int(metrics.num_requests_waiting),
        },
        "kv_stats": {
            "kv_active_blocks": int(metrics.kv_active_blocks) // page_size,
            "kv_total_blocks": int(metrics.kv_total_blocks) // page_size,
            "gpu_cache_usage_perc": float(metrics.gpu_cache_usage_perc),
            "gpu_prefix_cache_hit_rate": float(metrics.gpu_prefix_cache_hit_rate),
        },
        "spec_decode_stats": None,
    }


class Relays:
    """What feeds a worker's publishers (`EnginePublishers`) from SGLang: one KV event relay
    per data-parallel rank and the load loop. `close` stops them; the publishers are the
    worker's, which closes them after the engine."""

    def __init__(self, publishers: EnginePublishers) -> None:
        self.publishers = publishers
        self.relays: list[Any] = []
        self._load_task: asyncio.Task[None] | None = None
        self.loads = 0

    async def start_kv_relays(self, kv_endpoint: str, topic: str) -> None:
        """Relay rank r's events (SGLang's port + r) to the publishers' rank r."""
        from dynamo.llm.kv.zmq_events import ZmqKvEventRelay, subscriber_endpoint

        for rank, sink in enumerate(self.publishers.kv_events):
            relay = ZmqKvEventRelay(subscriber_endpoint(kv_endpoint, rank), sink, topic)
            relay.start()
            self.relays.append(relay)
            await relay.ready()

    def start_load(self, metrics_ipc_name: str, page_size: int) -> None:
        """Pull SGLang's load reports into the publishers' metrics (when there is one)."""
        if self.publishers.metrics is None:
            return
        self._load_task = asyncio.get_running_loop().create_task(
            self._pull_load(metrics_ipc_name, page_size), name="sglang-load"
        )

    async def _pull_load(self, address: str, page_size: int) -> None:
        import zmq
        import zmq.asyncio

        # Importing the scheduler's publisher module registers KvMetrics with SGLang's decoder.
        import sglang.srt.managers.scheduler_components.kv_events_publisher  # noqa: F401
        from sglang.srt.managers.io_struct import async_sock_recv

        sink = self.publishers.metrics
        assert sink is not None
        sock = zmq.asyncio.Context.instance().socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(address)
        try:
            while True:
                metrics = await async_sock_recv(sock)
                try:
                    sink.publish(forward_pass_metrics(metrics, page_size))
                    self.loads += 1
                except (AttributeError, TypeError, ValueError) as e:
                    log.warning("sglang: unreadable load report %r: %s", metrics, e)
        finally:
            sock.close()

    async def close(self) -> None:
        if self._load_task is not None:
            self._load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._load_task
        for relay in self.relays:
            await relay.close()


__all__ = ["Relays", "forward_pass_metrics"]
