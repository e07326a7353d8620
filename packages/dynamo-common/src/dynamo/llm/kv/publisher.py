"""`KvEventPublisher`: how a worker tells routers which KV blocks it holds (upstream's Python API).

    publisher = KvEventPublisher(send, "dynamo", "backend", worker_id, kv_block_size=64)
    publisher.publish_stored(event_id, token_ids, num_block_tokens, block_hashes, 0, parent_hash)
    publisher.publish_removed(event_id, block_hashes)
    await publisher.close()          # flushes what is queued

As upstream, `publish_*` are plain (non-async) calls an engine can make from its scheduler: the
event is serialised at once and queued, and one background task hands the queued payloads, in
order, to `send(subject, payload)`; any async callable works (a NATS client's `publish`, a test's
list append). A call from a thread other than the event loop's is moved onto the loop. With a
`dynamo.runtime` component, `KvEventPublisher.for_component(component, worker_id, block_size)`
wires the runtime's NATS connection in.

Engines hash blocks their own way, so `block_hashes` are opaque to the router; the publisher
computes each block's `tokens_hash` from its tokens (`dynamo.llm.kv.hashing`). Only full blocks
are published: at the first block whose `num_block_tokens` is not `kv_block_size` the list stops.
Negative engine hashes (Python's `hash()`) are taken modulo 2^64, as upstream's bindings do.

The publisher also remembers which blocks the worker holds now (what its events added and did
not remove), so a router that starts after them can learn them: `serve_sync` answers a router's
request on `kv_sync_subject` by queueing the held blocks again as `stored` events, behind the
events already queued, so the router sees them in order with the live ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from dynamo.llm.kv.events import cleared_event_json, removed_event_json, stored_event_json
from dynamo.llm.kv.hashing import block_hash
from dynamo.llm.schema import kv_events_subject, kv_sync_subject

log = logging.getLogger(__name__)

SendFn = Callable[[str, bytes], Awaitable[Any]]
_MASK64 = (1 << 64) - 1


class KvEventPublisher:
    """Publishes a worker's KV cache events; see the module docstring for the life cycle."""

    def __init__(
        self,
        send: SendFn,
        namespace: str,
        component: str,
        worker_id: int,
        kv_block_size: int,
        dp_rank: int = 0,
    ) -> None:
        if kv_block_size <= 0:
            raise ValueError(f"kv_block_size must be positive, got {kv_block_size}")
        self.subject = kv_events_subject(namespace, component)
        self.sync_subject = kv_sync_subject(namespace, component)
        self.worker_id = worker_id
        self.kv_block_size = kv_block_size
        self.dp_rank = dp_rank
        self._send = send
        self._queue: asyncio.Queue[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: The blocks held now, by engine hash: (parent hash, tokens hash). Changed on the loop,
        #: as each event is queued, so it always matches the events queued so far.
        self._held: dict[int, tuple[int | None, int]] = {}
        self._last_event_id = 0
        self._sync_subscription: Any = None
        #: Events handed to `send`, and events `send` failed on (logged and dropped).
        self.published = 0
        self.failed = 0

    @classmethod
    def for_component(
        cls, component: Any, worker_id: int, kv_block_size: int, dp_rank: int = 0
    ) -> KvEventPublisher:
        """A publisher on a `dynamo.runtime` Component's NATS connection (upstream's signature)."""
        runtime = component.runtime

        send = runtime.event_sender("KV events")

        return cls(send, component.namespace, component.name, worker_id, kv_block_size, dp_rank)

    # -- upstream API ---------------------------------------------------------------------------

    def publish_stored(
        self,
        event_id: int,
        token_ids: Sequence[int],
        num_block_tokens: Sequence[int],
        block_hashes: Sequence[int],
        lora_id: int = 0,
        parent_hash: int | None = None,
    ) -> None:
        """Announce blocks now cached, in sequence order, following `parent_hash` (None: root).

        `token_ids` is the concatenation of the blocks' tokens, `num_block_tokens[i]` the number
        of tokens of block i. `lora_id` is upstream's; only 0 (the base model) is taken: the
        router hashes blocks without a LoRA salt (neither do upstream's of that API generation),
        so an adapter's blocks would pass for the base model's, and any other id is a
        `ValueError`.
        """
        if lora_id:
            raise ValueError(
                f"kv event {event_id}: lora_id={lora_id}: LoRA adapters' blocks cannot be routed "
                "here (block hashes carry no adapter); publish the base model's (lora_id=0)"
            )
        if len(num_block_tokens) != len(block_hashes):
            raise ValueError("num_block_tokens and block_hashes must have the same length")
        blocks: list[tuple[int, int]] = []
        start = 0
        for n, h in zip(num_block_tokens, block_hashes, strict=True):
            if n != self.kv_block_size:
                if n:
                    log.debug("kv event %d: partial block of %d tokens not published", event_id, n)
                break
            end = start + n
            if end > len(token_ids):
                raise ValueError("token_ids is shorter than the sum of num_block_tokens")
            blocks.append((h & _MASK64, block_hash(token_ids[start:end])))
            start = end
        if not blocks:
            return
        parent = None if parent_hash is None else parent_hash & _MASK64

        def hold() -> None:
            self._last_event_id = event_id
            previous = parent
            for h, tokens in blocks:
                self._held[h] = (previous, tokens)
                previous = h

        self._enqueue(
            stored_event_json(self.worker_id, event_id, parent, blocks, self.dp_rank), hold
        )

    def publish_removed(self, event_id: int, block_hashes: Sequence[int]) -> None:
        """Announce that blocks (by the engine's hash) left the cache."""
        if not block_hashes:
            return
        hashes = [h & _MASK64 for h in block_hashes]

        def release() -> None:
            self._last_event_id = event_id
            for h in hashes:
                self._held.pop(h, None)

        self._enqueue(removed_event_json(self.worker_id, event_id, hashes, self.dp_rank), release)

    def publish_cleared(self, event_id: int) -> None:
        """Announce that the whole cache was dropped."""

        def release_all() -> None:
            self._last_event_id = event_id
            self._held.clear()

        self._enqueue(cleared_event_json(self.worker_id, event_id, self.dp_rank), release_all)

    # -- routers that start later -------------------------------------------------------------

    def held_blocks(self) -> int:
        """How many blocks the worker holds, by its events."""
        return len(self._held)

    def republish_held(self) -> int:
        """Queue every block held now again, as `stored` events (one per chain of single
        children, parents first; a block whose parent is gone is left out, as a router would drop
        it), behind the events queued so far; the number of events queued. Call on the
        publisher's loop."""
        chains = held_chains(self._held)
        for parent, blocks in chains:
            self._put(
                stored_event_json(self.worker_id, self._last_event_id, parent, blocks, self.dp_rank)
            )
        return len(chains)

    async def serve_sync(self, nats: Any) -> None:
        """Answer routers' sync requests on `sync_subject` (a NATS client's `subscribe`) with
        `republish_held`, until `close`."""

        async def on_sync(msg: Any) -> None:
            if not self._closed:
                count = self.republish_held()
                log.debug("kv sync: %d blocks again in %d events", self.held_blocks(), count)

        self.bind_loop()
        self._sync_subscription = await nats.subscribe(self.sync_subject, cb=on_sync)

    # -- delivery ---------------------------------------------------------------------------------

    def _enqueue(self, payload: bytes, change: Callable[[], None]) -> None:
        """Queue `payload` and apply `change` to the held blocks, both on the loop."""
        if self._closed:
            raise RuntimeError("KvEventPublisher is closed")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or (self._loop is not None and loop is not self._loop):
            if self._loop is None:
                raise RuntimeError("publish from a thread before the publisher's loop is known")
            self._loop.call_soon_threadsafe(self._put, payload, change)
            return
        self._put(payload, change)

    def _put(self, payload: bytes, change: Callable[[], None] | None = None) -> None:
        if change is not None:
            change()
        if self._queue is None:
            self._loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue()
            self._task = self._loop.create_task(self._drain(self._queue), name="kv-event-publisher")
        self._queue.put_nowait(payload)

    def bind_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Remember the event loop, so engine threads can publish before the first loop call."""
        if self._loop is None:
            self._loop = loop or asyncio.get_running_loop()

    async def _drain(self, queue: asyncio.Queue[bytes]) -> None:
        while True:
            payload = await queue.get()
            try:
                await self._send(self.subject, payload)
                self.published += 1
            except Exception as e:  # a lost event costs routing quality, never the worker
                self.failed += 1
                log.warning("could not publish a KV event on %s: %s", self.subject, e)
            finally:
                queue.task_done()

    async def flush(self) -> None:
        """Wait until every queued event was handed to `send`."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        """Stop answering syncs, flush, then stop the background task. Later `publish_*` calls
        raise."""
        if self._sync_subscription is not None:
            subscription, self._sync_subscription = self._sync_subscription, None
            with contextlib.suppress(Exception):  # the connection may be closed already
                await subscription.unsubscribe()
        await self.flush()
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def held_chains(
    held: dict[int, tuple[int | None, int]],
) -> list[tuple[int | None, list[tuple[int, int]]]]:
    """`held` (block -> (parent, tokens hash)) as `(parent, [(block, tokens hash), ...])` runs
    that can each be one `stored` event: from the roots (no parent) down, a parent's run before
    its children's, a run going on while a block has exactly one child. Blocks not reachable
    from a root (their parent was removed) are left out."""
    children: dict[int | None, list[int]] = {}
    for h, (parent, _) in held.items():
        children.setdefault(parent, []).append(h)
    chains: list[tuple[int | None, list[tuple[int, int]]]] = []
    seen: set[int] = set()
    stack: list[tuple[int | None, int]] = [(None, h) for h in reversed(children.get(None, []))]
    while stack:
        parent, h = stack.pop()
        if h in seen:  # a cycle could only come from colliding engine hashes
            continue
        seen.add(h)
        run = [(h, held[h][1])]
        while len(kids := children.get(h, [])) == 1 and kids[0] not in seen:
            h = kids[0]
            seen.add(h)
            run.append((h, held[h][1]))
        chains.append((parent, run))
        stack.extend((h, kid) for kid in reversed(children.get(h, [])))
    return chains


__all__ = ["KvEventPublisher", "SendFn", "held_chains", "kv_events_subject"]
