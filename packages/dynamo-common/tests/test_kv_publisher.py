"""KvEventPublisher: upstream's call shapes, tokens hashed per block, ordered delivery."""

import asyncio
import threading

import pytest

from dynamo.llm.kv.events import Removed, Stored, StoredBlock, parse_router_event
from dynamo.llm.kv.hashing import block_hash
from dynamo.llm.kv.indexer import RadixIndexer
from dynamo.llm.kv.publisher import KvEventPublisher, held_chains, kv_events_subject
from dynamo.llm.schema import kv_sync_subject


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


# -- a router that starts later: the held blocks announced again ----------------------------------


def _replay(messages: list[tuple[str, bytes]]) -> RadixIndexer:
    """A router's index that heard `messages`."""
    indexer = RadixIndexer()
    for _, payload in messages:
        indexer.apply_event(parse_router_event(payload))
    return indexer


async def test_the_held_blocks_announced_again_rebuild_the_routers_index() -> None:
    """What a router that starts after the worker learns from `republish_held` is what a router
    that heard every event knows: the same prefix matches, the same blocks."""
    sink = Sink()
    pub = KvEventPublisher(sink.send, "ns", "comp", worker_id=7, kv_block_size=2)
    a, b, c = [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 9, 9], [7, 7, 8, 8]
    pub.publish_stored(1, a, [2, 2, 2], [10, 11, 12])
    pub.publish_stored(2, b[4:], [2], [13], parent_hash=11)  # b shares a's first two blocks
    pub.publish_stored(3, c, [2, 2], [20, 21])
    pub.publish_removed(4, [21])
    pub.publish_stored(5, [5, 5], [2], [30])
    pub.publish_removed(6, [30])
    await pub.flush()
    assert pub.held_blocks() == 5
    live = list(sink.messages)  # a router that starts now hears only what follows
    assert pub.republish_held() == 4  # [10, 11], [12], [13] and [20]: parents first
    await pub.close()
    late = sink.messages[len(live) :]
    heard_all, started_late = _replay(live), _replay(late)
    for tokens in (a, b, c, [5, 5]):
        hashes = [block_hash(tokens[i : i + 2]) for i in range(0, len(tokens), 2)]
        assert started_late.find_matches(hashes).scores == heard_all.find_matches(hashes).scores
    assert started_late.blocks_of(7) == heard_all.blocks_of(7) == {10, 11, 12, 13, 20}
    assert all(parse_router_event(p).event_id == 6 for _, p in late)


async def test_cleared_leaves_nothing_to_announce() -> None:
    sink = Sink()
    pub = KvEventPublisher(sink.send, "ns", "comp", 1, 2)
    pub.publish_stored(1, [1, 2], [2], [10])
    pub.publish_cleared(2)
    assert pub.held_blocks() == 0
    assert pub.republish_held() == 0
    await pub.close()


def test_held_chains_put_a_parent_stored_again_before_its_children() -> None:
    """A parent removed and stored again comes after its children in storing order; the
    announcement still names it first. A block whose parent is gone cannot be matched from the
    start of any prompt (a router drops it), so it is not announced."""
    held: dict[int, tuple[int | None, int]] = {}
    held[2] = (1, 102)  # child first: its parent 1 was removed and stored again
    held[1] = (None, 101)
    held[3] = (2, 103)
    held[4] = (2, 104)  # 2 has two children: the run stops at 2
    held[9] = (8, 109)  # parent 8 gone
    assert held_chains(held) == [
        (None, [(1, 101), (2, 102)]),
        (2, [(3, 103)]),
        (2, [(4, 104)]),
    ]


async def test_serve_sync_answers_a_routers_request_until_closed(nats_server) -> None:
    """Against a real NATS server: a message on the sync subject queues the held blocks again
    on the events subject; after `close` nobody answers."""
    import nats

    nc = await nats.connect(nats_server.url)
    try:
        pub = KvEventPublisher(nc.publish, "ns", "comp", worker_id=3, kv_block_size=2)
        pub.publish_stored(1, [1, 2, 3, 4], [2, 2], [10, 11])
        await pub.flush()  # sent before anyone below listens
        await pub.serve_sync(nc)
        events = await nc.subscribe(pub.subject)
        await nc.publish(kv_sync_subject("ns", "comp"), b"")
        message = await events.next_msg(timeout=5)
        assert parse_router_event(message.data).data == Stored(
            None, (StoredBlock(10, block_hash([1, 2])), StoredBlock(11, block_hash([3, 4])))
        )
        await pub.close()
        await nc.publish(kv_sync_subject("ns", "comp"), b"")
        await nc.flush()
        with pytest.raises(nats.errors.TimeoutError):
            await events.next_msg(timeout=0.5)
    finally:
        await nc.close()
