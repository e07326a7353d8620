"""The simulated paged KV cache: vLLM v1's block pool with prefix caching and LRU eviction.

Full blocks are named by their sequence hash (`dynamo.llm.kv.hashing`), so any request whose
prompt starts with the same full blocks shares them. A block no request uses any more stays
cached ("inactive") until space is needed; then the least recently freed one is evicted. A
partial block (the tail a request is still filling) has no name and belongs to its request;
when it fills up it is promoted to a named full block.

Every change to the set of named blocks becomes a KV event, through `publish_stored` /
`publish_removed` of a `KvEventPublisher`-like sink, with the sequence hash as the engine's
`block_hash`. Events are buffered and handed over by `flush_events()` once per scheduler step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class KvEventSink(Protocol):
    """What the mocker needs of a publisher: `dynamo.llm.kv.KvEventPublisher` is one."""

    def publish_stored(
        self,
        event_id: int,
        token_ids: Sequence[int],
        num_block_tokens: Sequence[int],
        block_hashes: Sequence[int],
        lora_id: int = 0,
        parent_hash: int | None = None,
    ) -> None: ...

    def publish_removed(self, event_id: int, block_hashes: Sequence[int]) -> None: ...


class OutOfBlocks(RuntimeError):
    """No free or evictable block is left."""


@dataclass(slots=True)
class _Stored:
    parent: int | None
    hashes: list[int]
    tokens: list[int]


class KvCache:
    """Block accounting. `used = named blocks (active or cached) + partial blocks`."""

    def __init__(self, num_blocks: int, block_size: int, sink: KvEventSink | None = None) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.sink = sink
        self._refs: dict[int, int] = {}
        self._inactive: OrderedDict[int, None] = OrderedDict()
        self.partial_blocks = 0
        self._pending: list[_Stored | list[int]] = []
        self._event_id = 0
        self.evictions = 0

    # -- capacity ------------------------------------------------------------------------------

    @property
    def used_blocks(self) -> int:
        return len(self._refs) + self.partial_blocks

    @property
    def active_blocks(self) -> int:
        """Blocks some running request uses (upstream `kv_active_blocks`)."""
        return len(self._refs) - len(self._inactive) + self.partial_blocks

    @property
    def available_blocks(self) -> int:
        """Blocks a new request could get: free ones plus evictable cached ones."""
        return self.num_blocks - self.active_blocks

    def cached_hashes(self) -> set[int]:
        """Every named block held (what the router should believe this worker has)."""
        return set(self._refs)

    def is_cached(self, seq_hash: int) -> bool:
        return seq_hash in self._refs

    def refcount(self, seq_hash: int) -> int:
        """Running requests using the block (0: cached but free; also 0 when not cached)."""
        return self._refs.get(seq_hash, 0)

    def _make_room(self) -> None:
        if self.used_blocks < self.num_blocks:
            return
        if not self._inactive:
            raise OutOfBlocks
        victim, _ = self._inactive.popitem(last=False)
        del self._refs[victim]
        self.evictions += 1
        last = self._pending[-1] if self._pending else None
        if isinstance(last, list):
            last.append(victim)
        else:
            self._pending.append([victim])

    # -- named blocks --------------------------------------------------------------------------

    def acquire(self, seq_hash: int) -> bool:
        """Take a reference on a cached block; False if it is not cached."""
        refs = self._refs.get(seq_hash)
        if refs is None:
            return False
        if refs == 0:
            del self._inactive[seq_hash]
        self._refs[seq_hash] = refs + 1
        return True

    def store(self, seq_hash: int, parent: int | None, tokens: Sequence[int]) -> None:
        """Take a reference on a block, creating it (and announcing it) when it is new."""
        if self.acquire(seq_hash):
            return
        self._make_room()
        self._refs[seq_hash] = 1
        self._announce(seq_hash, parent, tokens)

    def _announce(self, seq_hash: int, parent: int | None, tokens: Sequence[int]) -> None:
        last = self._pending[-1] if self._pending else None
        if isinstance(last, _Stored) and last.hashes[-1] == parent:
            last.hashes.append(seq_hash)
            last.tokens.extend(tokens)
        else:
            self._pending.append(_Stored(parent, [seq_hash], list(tokens)))

    def release(self, seq_hash: int) -> None:
        """Drop a reference; an unused block stays cached, most recently used last."""
        refs = self._refs[seq_hash] - 1
        self._refs[seq_hash] = refs
        if refs == 0:
            self._inactive[seq_hash] = None

    # -- partial blocks ------------------------------------------------------------------------

    def allocate_partial(self) -> None:
        self._make_room()
        self.partial_blocks += 1

    def release_partial(self) -> None:
        self.partial_blocks -= 1

    def promote(self, seq_hash: int, parent: int | None, tokens: Sequence[int]) -> None:
        """A request's partial block just filled up: it becomes the named block `seq_hash`."""
        self.partial_blocks -= 1
        if not self.acquire(seq_hash):
            self._refs[seq_hash] = 1
            self._announce(seq_hash, parent, tokens)

    # -- events --------------------------------------------------------------------------------

    def flush_events(self) -> int:
        """Hand the buffered events to the sink, in order; returns how many."""
        pending, self._pending = self._pending, []
        if self.sink is None:
            return 0
        bs = self.block_size
        for item in pending:
            self._event_id += 1
            if isinstance(item, _Stored):
                self.sink.publish_stored(
                    self._event_id,
                    item.tokens,
                    [bs] * len(item.hashes),
                    item.hashes,
                    0,
                    item.parent,
                )
            else:
                self.sink.publish_removed(self._event_id, item)
        return len(pending)


__all__ = ["KvCache", "KvEventSink", "OutOfBlocks"]
