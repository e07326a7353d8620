"""TensorRT-LLM's KV cache event dicts and iteration stats as our events and load metrics."""

from __future__ import annotations

import asyncio
import json

from dynamo.engines.trtllm._publishers import KvEventTranslator, forward_pass_metrics, poll_forever
from dynamo.llm.kv.events import Removed, Stored, StoredBlock, parse_router_event
from dynamo.llm.kv.hashing import block_hash
from dynamo.llm.kv.load_metrics import ForwardPassMetrics
from dynamo.llm.kv.publisher import KvEventPublisher


def stored(event_id, parent, blocks, window=4096, **extra):
    return {
        "event_id": event_id,
        "window_size": window,
        "data": {
            "type": "stored",
            "parent_hash": parent,
            "blocks": [
                {
                    "type": "stored_block",
                    "block_hash": h,
                    "tokens": [
                        {"type": "unique_token", "token_id": t, "token_extra_id": 0} for t in toks
                    ],
                    "cache_level": 0,
                    "priority": 35,
                }
                for h, toks in blocks
            ],
        },
        **extra,
    }


def removed(event_id, hashes, window=4096):
    return {
        "event_id": event_id,
        "window_size": window,
        "data": {"type": "removed", "block_hashes": hashes},
    }


class Sink:
    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    async def send(self, subject: str, payload: bytes) -> None:
        self.payloads.append(payload)


async def test_events_reach_our_publisher_rehashed() -> None:
    sink = Sink()
    pub = KvEventPublisher(sink.send, "ns", "comp", worker_id=5, kv_block_size=4)
    tr = KvEventTranslator({0: pub}, block_size=4)
    a, b, tail = [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]
    tr.handle(
        {
            "event_id": 0,
            "window_size": 4096,
            "data": {"type": "created", "num_blocks_per_cache_level": [100, 0]},
        }
    )
    tr.handle(stored(1, None, [(101, a), (102, b), (103, tail)]))
    tr.handle(removed(2, [103]))  # the partial block was never announced: nor is its removal
    tr.handle(removed(3, [102]))
    tr.handle(stored(4, None, [(201, a)], window=512))  # a sliding-window layer: dropped
    tr.handle({"event_id": 5, "window_size": 4096, "data": {"type": "updated", "block_hash": 101}})
    await pub.close()
    events = [parse_router_event(p) for p in sink.payloads]
    assert [e.data for e in events] == [
        Stored(None, (StoredBlock(101, block_hash(a)), StoredBlock(102, block_hash(b)))),
        Removed((102,)),
    ]
    assert tr.partial == set()


def test_events_go_to_their_attention_dp_rank() -> None:
    calls: dict[int, list] = {0: [], 1: []}

    class RankSink:
        def __init__(self, rank: int) -> None:
            self.rank = rank

        def publish_stored(self, *args) -> None:
            calls[self.rank].append(args)

        def publish_removed(self, *args) -> None:
            calls[self.rank].append(args)

        def publish_cleared(self, *args) -> None:
            calls[self.rank].append(args)

    tr = KvEventTranslator({0: RankSink(0), 1: RankSink(1)}, block_size=2)
    tr.handle(stored(1, 7, [(8, [1, 2])], attention_dp_rank=1))
    tr.handle(stored(2, None, [(9, [1, 2])], attention_dp_rank=3))  # no such rank: dropped
    assert calls[0] == [] and calls[1] == [(0, [1, 2], [2], [8], 0, 7)]


def test_stats_as_forward_pass_metrics() -> None:
    stat = {
        "iter": 10,
        "numActiveRequests": 3,
        "numQueuedRequests": 1,
        "maxNumActiveRequests": 64,
        "kvCacheStats": {
            "maxNumBlocks": 400,
            "usedNumBlocks": 100,
            "cacheHitRate": 0.5,
            "tokensPerBlock": 32,
        },
        "attentionDpRank": 0,
    }
    metrics = forward_pass_metrics(stat)
    assert metrics["worker_stats"] == {
        "data_parallel_rank": 0,
        "request_active_slots": 3,
        "request_total_slots": 64,
        "num_requests_waiting": 1,
    }
    assert metrics["kv_stats"] == {
        "kv_active_blocks": 100,
        "kv_total_blocks": 400,
        "gpu_cache_usage_perc": 0.25,
        "gpu_prefix_cache_hit_rate": 0.5,
    }
    ForwardPassMetrics.model_validate(metrics)
    assert forward_pass_metrics(json.dumps(stat)) == metrics  # older releases send JSON text
    assert forward_pass_metrics({})["kv_stats"]["gpu_cache_usage_perc"] == 0.0


async def test_poll_forever_drains_and_survives_bad_items() -> None:
    batches = [[{"ok": 1}, "bad", {"ok": 2}], [], [{"ok": 3}]]
    seen: list[int] = []

    async def source():
        for item in batches.pop(0) if batches else []:
            yield item

    def handle(item) -> None:
        seen.append(item["ok"])  # "bad" raises TypeError: logged, not fatal

    task = asyncio.ensure_future(poll_forever(source, handle, "test item"))
    for _ in range(200):
        if seen == [1, 2, 3]:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert seen == [1, 2, 3]
