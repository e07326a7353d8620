"""KvEventPublisher: upstream's call shapes, tokens hashed per block, ordered delivery."""

import asyncio
import threading

import pytest

from dynamo.llm.kv.events import Removed, Stored, StoredBlock, parse_router_event
from dynamo.llm.kv.hashing import block_hash
from dynamo.llm.kv.publisher import KvEventPublisher, kv_events_subject


class Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    async def send(self, subject: str, payload: bytes) -> None:
        await asyncio.sleep(0)
        self.messages.append((subject, payload))


def test_subject() -> None:
    assert kv_events_subject("dynamo", "backend") == "namespace.dynamo.component.backend.kv_events"


async def test_publish_stored_hashes_each_full_block() -> None:
    sink = Sink()
    pub = KvEventPublisher(sink.send, "ns", "comp", worker_id=42, kv_block_size=4)
    tokens = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    pub.publish_stored(1, tokens, [4, 4, 1], [100, -1, 300], 0, None)
    pub.publish_stored(2, [9, 9, 9, 9], [4], [400], lora_id=0, parent_hash=-1)
    pub.publish_removed(3, [100, -1])
    await pub.close()
    assert [s for s, _ in sink.messages] == ["namespace.ns.component.comp.kv_events"] * 3
    events = [parse_router_event(p) for _, p in sink.messages]
    assert [e.event_id for e in events] == [1, 2, 3]
    assert all(e.worker_id == 42 for e in events)
    mask = 2**64 - 1
    # The partial third block is not published; a negative engine hash becomes its u64 form.
    assert events[0].data == Stored(
        None,
        (StoredBlock(100, block_hash([1, 2, 3, 4])), StoredBlock(mask, block_hash([5, 6, 7, 8]))),
    )
    assert events[1].data == Stored(mask, (StoredBlock(400, block_hash([9, 9, 9, 9])),))
    assert events[2].data == Removed((100, mask))
    assert pub.published == 3


async def test_a_lora_adapters_blocks_are_refused() -> None:
    """Issue 10 item 6: `lora_id` was accepted and ignored, publishing an adapter's blocks as
    the base model's (the hashes carry no adapter)."""
    sink = Sink()
    pub = KvEventPublisher(sink.send, "ns", "comp", 1, 4)
    with pytest.raises(ValueError, match="lora_id=2"):
        pub.publish_stored(1, [1, 2, 3, 4], [4], [7], lora_id=2)
    await pub.close()
    assert sink.messages == []


async def test_nothing_to_publish_sends_nothing() -> None:
    sink = Sink()
    pub = KvEventPublisher(sink.send, "ns", "comp", 1, 4)
    pub.publish_stored(1, [1, 2], [2], [7])
    pub.publish_removed(2, [])
    await pub.close()
    assert sink.messages == []


async def test_failed_send_is_counted_not_raised() -> None:
    async def broken(subject: str, payload: bytes) -> None:
        raise ConnectionError("no server")

    pub = KvEventPublisher(broken, "ns", "comp", 1, 4)
    pub.publish_removed(1, [5])
    pub.publish_removed(2, [6])
    await pub.close()
    assert (pub.published, pub.failed) == (0, 2)


async def test_publish_from_another_thread_is_delivered_in_order() -> None:
    sink = Sink()
    pub = KvEventPublisher(sink.send, "ns", "comp", 1, 4)
    pub.bind_loop()

    def engine_thread() -> None:
        for i in range(20):
            pub.publish_removed(i, [i + 1])

    t = threading.Thread(target=engine_thread)
    t.start()
    await asyncio.to_thread(t.join)
    await asyncio.sleep(0)
    await pub.close()
    assert [parse_router_event(p).event_id for _, p in sink.messages] == list(range(20))


async def test_mismatched_lengths_and_closed_publisher() -> None:
    sink = Sink()
    pub = KvEventPublisher(sink.send, "ns", "comp", 1, 4)
    with pytest.raises(ValueError):
        pub.publish_stored(1, [1, 2, 3, 4], [4], [1, 2])
    with pytest.raises(ValueError):
        pub.publish_stored(1, [1, 2, 3], [4], [1])
    await pub.close()
    with pytest.raises(RuntimeError):
        pub.publish_removed(2, [1])
    with pytest.raises(ValueError):
        KvEventPublisher(sink.send, "ns", "comp", 1, 0)
