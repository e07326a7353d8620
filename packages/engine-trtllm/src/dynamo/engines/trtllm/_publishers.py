"""What a distributed TensorRT-LLM worker tells routers: its KV cache events and its load, fed
to the publishers the worker attached (`dynamo.llm.kv.engine_publishers`).

TensorRT-LLM hands both out through polling APIs (`LLM.get_kv_cache_events_async(timeout)` and
`LLM.get_stats_async(timeout)`, each an async iterator over what queued up), as dicts:

    {"event_id": 7, "window_size": 4096, ["attention_dp_rank": 0],
     "data": {"type": "stored", "parent_hash": 11 | None,
              "blocks": [{"type": "stored_block", "block_hash": 12,
                          "tokens": [{"type": "unique_token", "token_id": 5, ...}, ...], ...}]}}
    {"data": {"type": "removed", "block_hashes": [12, ...]}, ...}
    {"data": {"type": "created", "num_blocks_per_cache_level": [...]}, ...}   (ignored)
    {"data": {"type": "updated", ...}, ...}                                   (ignored)

    {"numActiveRequests": 3, "numQueuedRequests": 0, "maxNumActiveRequests": 64,
     "kvCacheStats": {"maxNumBlocks": 4096, "usedNumBlocks": 120, "cacheHitRate": 0.4, ...},
     ["attentionDpRank": 0], ...}

As upstream Dynamo's TensorRT-LLM publisher: a partial block (fewer tokens than the block size)
ends a stored event and its hash is remembered, so its later removal is not announced; events of
an attention window other than the largest (sliding-window layers) are dropped; hashes are the
engine's, our publisher re-hashes the tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from dynamo.llm.kv.engine_publishers import EnginePublishers
from dynamo.llm.kv.zmq_events import KvEventSink

log = logging.getLogger(__name__)

#: Poll back-off: from the first to the longest sleep between empty polls, in seconds.
_MIN_SLEEP_S = 0.01
_MAX_SLEEP_S = 0.5
_POLL_TIMEOUT_S = 0.05


class KvEventTranslator:
    """TensorRT-LLM event dicts -> `publish_stored` / `publish_removed` on one sink per rank."""

    def __init__(self, sinks: Mapping[int, KvEventSink], block_size: int) -> None:
        self.sinks = sinks
        self.block_size = block_size
        self.max_window: int | None = None
        self.partial: set[int] = set()
        self._next_id = 0

    def _sink(self, event: Mapping[str, Any]) -> KvEventSink | None:
        rank = int(event.get("attention_dp_rank") or 0)
        sink = self.sinks.get(rank)
        if sink is None:
            log.warning("trtllm: KV event for attention-DP rank %d, which has no publisher", rank)
        return sink

    def _event_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def handle(self, event: Mapping[str, Any]) -> None:
        data = event.get("data") or {}
        kind = data.get("type")
        window = event.get("window_size")
        if kind == "created":
            if window is not None and (self.max_window is None or window > self.max_window):
                self.max_window = window
            return
        if window is not None and self.max_window is not None and window != self.max_window:
            return  # a sliding-window layer's cache: the router scores full attention only
        if kind == "stored":
            self._stored(event, data)
        elif kind == "removed":
            hashes = [h for h in data.get("block_hashes") or () if h not in self.partial]
            self.partial.difference_update(data.get("block_hashes") or ())
            sink = self._sink(event)
            if hashes and sink is not None:
                sink.publish_removed(self._event_id(), hashes)

    def _stored(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        tokens: list[int] = []
        counts: list[int] = []
        hashes: list[int] = []
        for block in data.get("blocks") or ():
            block_tokens = [int(t["token_id"]) for t in block.get("tokens") or ()]
            if len(block_tokens) != self.block_size:
                self.partial.add(block["block_hash"])
                break
            tokens += block_tokens
            counts.append(len(block_tokens))
            hashes.append(block["block_hash"])
        sink = self._sink(event)
        if hashes and sink is not None:
            sink.publish_stored(
                self._event_id(), tokens, counts, hashes, 0, data.get("parent_hash")
            )


def forward_pass_metrics(stat: Mapping[str, Any] | str) -> dict[str, Any]:
    """Upstream's `ForwardPassMetrics` for one TensorRT-LLM iteration-stats dict (older
    releases hand out the same dict as JSON text)."""
    values: Mapping[str, Any] = json.loads(stat) if isinstance(stat, str) else stat
    kv = values.get("kvCacheStats") or {}
    used = int(kv.get("usedNumBlocks") or 0)
    total = int(kv.get("maxNumBlocks") or 0)
    return {
        "worker_stats": {
            "data_parallel_rank": int(values.get("attentionDpRank") or 0),
            "request_active_slots": int(values.get("numActiveRequests") or 0),
            "request_total_slots": int(values.get("maxNumActiveRequests") or 0),
            "num_requests_waiting": int(values.get("numQueuedRequests") or 0),
        },
        "kv_stats": {
            "kv_active_blocks": used,
            "kv_total_blocks": total,
            "gpu_cache_usage_perc": used / total if total else 0.0,
            "gpu_prefix_cache_hit_rate": float(kv.get("cacheHitRate") or 0.0),
        },
        "spec_decode_stats": None,
    }


async def poll_forever(
    source: Callable[[], AsyncIterator[Any]], handle: Callable[[Any], None], what: str
) -> None:
    """Drain `source()` again and again, sleeping longer (up to half a second) while it is
    empty; a bad item is logged, never fatal."""
    sleep = _MIN_SLEEP_S
    while True:
        got = 0
        try:
            async for item in source():
                got += 1
                try:
                    handle(item)
                except (KeyError, TypeError, ValueError) as e:
                    log.warning("trtllm: unreadable %s %r: %s", what, item, e)
        except (IndexError, StopAsyncIteration):  # an empty queue, in some releases
            pass
        sleep = _MIN_SLEEP_S if got else min(sleep * 2, _MAX_SLEEP_S)
        await asyncio.sleep(sleep)


class Pollers:
    """What feeds a worker's publishers (`EnginePublishers`) from TensorRT-LLM: one task polls
    KV cache events into the ranks' publishers, one polls iteration stats into the load
    publisher. `close` stops them; the publishers are the worker's, which closes them after
    the engine. Made on the event loop."""

    def __init__(self, llm: Any, publishers: EnginePublishers, block_size: int) -> None:
        self.publishers = publishers
        loop = asyncio.get_running_loop()
        self._tasks: list[asyncio.Task[None]] = []
        self.translator: KvEventTranslator | None = None
        if publishers.kv_events:
            self.translator = KvEventTranslator(dict(enumerate(publishers.kv_events)), block_size)
            self._tasks.append(
                loop.create_task(
                    poll_forever(
                        lambda: llm.get_kv_cache_events_async(timeout=_POLL_TIMEOUT_S),
                        self.translator.handle,
                        "KV event",
                    ),
                    name="trtllm-kv-events",
                )
            )
        metrics = publishers.metrics
        if metrics is not None:
            self._tasks.append(
                loop.create_task(
                    poll_forever(
                        lambda: llm.get_stats_async(timeout=_POLL_TIMEOUT_S),
                        lambda stat: metrics.publish(forward_pass_metrics(stat)),
                        "iteration stats",
                    ),
                    name="trtllm-stats",
                )
            )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["KvEventTranslator", "Pollers", "forward_pass_metrics", "poll_forever"]
