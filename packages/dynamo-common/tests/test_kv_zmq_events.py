"""The vLLM/SGLang KV event relay: both wire forms decoded, filters, and a real ZMQ PUB socket."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import zmq
import zmq.asyncio

from dynamo.llm.kv.events import Cleared, Removed, Stored, StoredBlock, parse_router_event
from dynamo.llm.kv.hashing import block_hash
from dynamo.llm.kv.publisher import KvEventPublisher
from dynamo.llm.kv.zmq_events import (
    EngineAllCleared,
    EngineBlockRemoved,
    EngineBlockStored,
    EventForwarder,
    KvEventDecodeError,
    ZmqKvEventRelay,
    decode_event_batch,
    engine_hash,
    subscriber_endpoint,
)

MASK = 2**64 - 1


def batch(*events, ts: float = 1.5, rank: int | None = 0) -> bytes:
    return msgspec.msgpack.encode([ts, list(events), rank])


def stored_map(hashes, parent, tokens, block_size, **extra):
    return {
        "type": "BlockStored",
        "block_hashes": hashes,
        "parent_block_hash": parent,
        "token_ids": tokens,
        "block_size": block_size,
        "lora_id": None,
        "medium": "GPU",
        **extra,
    }


def test_map_encoded_events_as_vllm_and_sglang_send_them() -> None:
    decoded = decode_event_batch(
        batch(
            stored_map([11, 12], None, list(range(8)), 4),
            {"type": "BlockRemoved", "block_hashes": [11], "medium": "GPU"},
            {"type": "AllBlocksCleared"},
        )
    )
    assert decoded.ts == 1.5 and decoded.data_parallel_rank == 0
    assert decoded.events == [
        EngineBlockStored([11, 12], None, list(range(8)), 4),
        EngineBlockRemoved([11]),
        EngineAllCleared(),
    ]


def test_array_encoded_events_of_older_releases() -> None:
    decoded = decode_event_batch(
        batch(["BlockStored", [-5], 3, [1, 2], 2, None, "GPU"], ["BlockRemoved", [-5], "GPU"])
    )
    assert decoded.events == [
        EngineBlockStored([(-5) & MASK], 3, [1, 2], 2),
        EngineBlockRemoved([(-5) & MASK]),
    ]


def test_bytes_hashes_become_vllms_integer_form() -> None:
    digest = bytes(range(32))
    assert engine_hash(digest) == int.from_bytes(digest, "big") & MASK
    decoded = decode_event_batch(batch(stored_map([digest], digest, [1, 2], 2)))
    assert decoded.events[0].block_hashes == [engine_hash(digest)]
    assert decoded.events[0].parent_block_hash == engine_hash(digest)


def test_other_groups_media_and_types_are_left_out() -> None:
    decoded = decode_event_batch(
        batch(
            stored_map([1], None, [1, 2], 2, group_idx=1),
            stored_map([2], None, [1, 2], 2, medium="CPU"),
            {"type": "BlockRemoved", "block_hashes": [3], "medium": "DISK"},
            {"type": "SomethingNew", "x": 1},
            stored_map([4], None, [1, 2], 2, group_idx=0),
        )
    )
    assert decoded.events == [EngineBlockStored([4], None, [1, 2], 2)]


@pytest.mark.parametrize(
    "payload",
    [b"\xc1", msgspec.msgpack.encode(5), msgspec.msgpack.encode([1.0, 2]), batch([1, 2, 3])],
)
def test_garbage_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(KvEventDecodeError):
        decode_event_batch(payload)


def test_partial_last_page_gets_its_real_length() -> None:
    event = EngineBlockStored([1, 2, 3], None, list(range(10)), 4)
    assert event.num_block_tokens() == [4, 4, 2]


class Sink:
    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    async def send(self, subject: str, payload: bytes) -> None:
        self.payloads.append(payload)


async def test_forwarder_feeds_our_publisher_with_rehashed_blocks() -> None:
    sink = Sink()
    pub = KvEventPublisher(sink.send, "ns", "comp", worker_id=9, kv_block_size=4)
    fwd = EventForwarder(pub)
    tokens = list(range(100, 110))  # two full blocks and a partial one
    fwd.forward(decode_event_batch(batch(stored_map([7, 8, 9], 6, tokens, 4))))
    fwd.forward(decode_event_batch(batch({"type": "BlockRemoved", "block_hashes": [7, 8]})))
    fwd.forward(decode_event_batch(batch({"type": "AllBlocksCleared"})))
    await pub.close()
    events = [parse_router_event(p) for p in sink.payloads]
    assert [e.event_id for e in events] == [0, 1, 2]
    assert events[0].data == Stored(
        6, (StoredBlock(7, block_hash(tokens[:4])), StoredBlock(8, block_hash(tokens[4:8])))
    )
    assert events[1].data == Removed((7, 8))
    assert isinstance(events[2].data, Cleared)


async def test_forwarder_leaves_out_lora_adapters_blocks(caplog) -> None:
    """Block hashes carry no adapter, so a LoRA adapter's blocks would pass for the base
    model's: they are left out, with one warning, and the base model's still go through."""
    sink = Sink()
    pub = KvEventPublisher(sink.send, "ns", "comp", worker_id=9, kv_block_size=4)
    fwd = EventForwarder(pub)
    tokens = list(range(8))
    fwd.forward(decode_event_batch(batch(stored_map([1, 2], None, tokens, 4, lora_id=3))))
    fwd.forward(decode_event_batch(batch(stored_map([5, 6], None, tokens, 4, lora_id=3))))
    fwd.forward(decode_event_batch(batch(stored_map([7, 8], None, tokens, 4))))
    await pub.close()
    events = [parse_router_event(p) for p in sink.payloads]
    assert [e.data.blocks[0].block_hash for e in events] == [7]  # type: ignore[union-attr]
    assert fwd.lora_skipped == 2
    assert len([r for r in caplog.records if "LoRA" in r.getMessage()]) == 1


def test_subscriber_endpoint() -> None:
    assert subscriber_endpoint("tcp://*:5557") == "tcp://127.0.0.1:5557"
    assert subscriber_endpoint("tcp://*:5557", 2) == "tcp://127.0.0.1:5559"
    assert subscriber_endpoint("tcp://10.0.0.2:6000", 1) == "tcp://10.0.0.2:6001"
    assert subscriber_endpoint("inproc://kv", 1) == "inproc://kv_dp1"
    assert subscriber_endpoint("ipc:///tmp/kv") == "ipc:///tmp/kv"


async def test_relay_over_a_real_zmq_pub_socket() -> None:
    ctx = zmq.asyncio.Context.instance()
    pub_sock = ctx.socket(zmq.PUB)
    pub_sock.setsockopt(zmq.LINGER, 0)
    port = pub_sock.bind_to_random_port("tcp://127.0.0.1")
    sink = Sink()
    publisher = KvEventPublisher(sink.send, "ns", "comp", worker_id=3, kv_block_size=2)
    relay = ZmqKvEventRelay(subscriber_endpoint(f"tcp://*:{port}"), publisher, topic="kv")
    relay.start()
    try:
        await relay.ready()
        seq = 0

        async def send(payload: bytes, topic: bytes = b"kv") -> None:
            nonlocal seq
            await pub_sock.send_multipart([topic, seq.to_bytes(8, "big"), payload])
            seq += 1

        # A SUB socket misses what is sent before its subscription reaches the publisher:
        # resend a probe until one gets through.
        for _ in range(100):
            await send(batch({"type": "AllBlocksCleared"}))
            await asyncio.sleep(0.02)
            if relay.batches:
                break
        assert relay.batches, "the relay never received a batch"
        before = relay.batches
        await send(batch(stored_map([1, 2], None, [5, 6, 7, 8], 2)), topic=b"other")
        seq += 3  # three batches the publisher dropped
        await send(batch(stored_map([1, 2], None, [5, 6, 7, 8], 2)))
        for _ in range(100):
            if relay.batches > before:
                break
            await asyncio.sleep(0.01)
        assert relay.batches == before + 1  # the other topic was not subscribed
        assert relay.missed == 4  # the unsubscribed one and the three dropped
        await publisher.flush()
        last = parse_router_event(sink.payloads[-1])
        assert last.worker_id == 3
        assert last.data == Stored(
            None, (StoredBlock(1, block_hash([5, 6])), StoredBlock(2, block_hash([7, 8])))
        )
    finally:
        await relay.close()
        await publisher.close()
        pub_sock.close()
