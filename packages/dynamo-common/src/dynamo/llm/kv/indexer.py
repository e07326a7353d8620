"""The router's index of which worker holds which KV blocks (upstream `RadixTree`).

Upstream keeps a radix tree of `tokens_hash` nodes. A path from the root spells a prompt's full
blocks, which is exactly what a block's *sequence hash* names (`hashing.sequence_hashes`: each
block's local hash chained onto its predecessor's). So the tree is kept here flattened: one dict
from sequence hash to the bitmask of the workers that hold that block. Two prompts share entries
exactly as long as they share a prefix, as in the tree, and a match walks the request's sequence
hashes with one dict lookup and one integer AND per block.

Why not node objects: at 64 workers x 100k blocks the tree was a million Python sets and nodes,
and a routing decision paid for a set comparison per block. Ints in a dict cost a fraction of
that, are invisible to the cyclic garbage collector (a full collection over a million nodes took
tens of milliseconds, in the middle of some unlucky request's routing), and make dropping a
worker a bit operation.

Each worker keeps a map from its engine's opaque `block_hash` to the block's sequence hash, which
is how `stored` finds its parent and `removed` its blocks. `find_matches` reports, per worker, how
many consecutive blocks from the first it already holds.

The index has a hard budget, `max_blocks` (worker, block) entries: lost `removed` events, or
workers that never send them, must not grow the router until it runs out of memory. Beyond the
budget the least recently announced entry of the worker holding the most is dropped (a block the
engine stores again counts as new); the router then merely underestimates that worker's cache,
and `evicted_blocks` counts how often.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from dynamo.llm.kv.events import Cleared, Removed, RouterEvent, Stored
from dynamo.llm.kv.hashing import chain_hash, sequence_hashes

log = logging.getLogger(__name__)


class ParentBlockNotFound(LookupError):
    """A `stored` event names a parent block the worker never announced (or already removed)."""


@dataclass(slots=True)
class OverlapScores:
    #: worker → number of consecutive blocks, from the first, that the worker holds.
    scores: dict[int, int] = field(default_factory=dict)
    #: worker → number of blocks the worker holds in total (the tie-breaker: less is better).
    tree_sizes: dict[int, int] = field(default_factory=dict)


#: The default budget: about 200 bytes an entry, so some 200 MB at most.
DEFAULT_MAX_BLOCKS = 1_000_000


class RadixIndexer:
    """Applies `RouterEvent`s and answers overlap queries. Not thread-safe: one loop owns it."""

    def __init__(self, max_blocks: int | None = DEFAULT_MAX_BLOCKS) -> None:
        #: Most (worker, block) entries kept (None: no limit); see the module docstring.
        self.max_blocks = max_blocks
        self._entries = 0
        #: Entries dropped to stay within `max_blocks`.
        self.evicted_blocks = 0
        #: sequence hash → bitmask of the workers (by bit) holding that block.
        self._holders: dict[int, int] = {}
        #: worker → its engine's block hash → sequence hash.
        self._lookup: dict[int, dict[int, int]] = {}
        self._bit_of: dict[int, int] = {}
        self._worker_of_bit: dict[int, int] = {}
        self._free_bits: list[int] = []
        self.events_applied = 0
        #: Events dropped because their parent block was unknown (out-of-order or lost events).
        self.parent_not_found = 0

    # -- events -------------------------------------------------------------------------------

    def apply_event(self, event: RouterEvent) -> bool:
        """Apply one event; False (and a log line) when it had to be dropped."""
        data = event.data
        try:
            if isinstance(data, Stored):
                self._stored(event.worker_id, data)
            elif isinstance(data, Removed):
                self._removed(event.worker_id, data.block_hashes)
            elif isinstance(data, Cleared):
                self.clear_worker(event.worker_id)
        except ParentBlockNotFound as e:
            self.parent_not_found += 1
            log.warning("KV event %d of worker %d dropped: %s", event.event_id, event.worker_id, e)
            return False
        self.events_applied += 1
        return True

    def _bit(self, worker: int) -> int:
        """The worker's bit in the holder masks, assigned on first sight (freed bits reused)."""
        bit = self._bit_of.get(worker)
        if bit is None:
            index = self._free_bits.pop() if self._free_bits else len(self._bit_of)
            bit = self._bit_of[worker] = 1 << index
            self._worker_of_bit[bit] = worker
            self._lookup[worker] = {}
        return bit

    def _stored(self, worker: int, data: Stored) -> None:
        bit = self._bit(worker)
        lookup = self._lookup[worker]
        if data.parent_hash is None:
            parent = None
        else:
            parent = lookup.get(data.parent_hash)
            if parent is None:
                raise ParentBlockNotFound(f"parent block {data.parent_hash} is not known")
        holders = self._holders
        for block in data.blocks:
            seq = block.tokens_hash if parent is None else chain_hash(parent, block.tokens_hash)
            holders[seq] = holders.get(seq, 0) | bit
            if lookup.pop(block.block_hash, None) is None:  # a block stored again moves last
                self._entries += 1
            lookup[block.block_hash] = seq
            parent = seq
        if self.max_blocks is not None and self._entries > self.max_blocks:
            self._evict(self._entries - self.max_blocks)

    def _evict(self, count: int) -> None:
        """Drop `count` entries: the oldest of whichever worker holds the most, one at a time."""
        for _ in range(count):
            worker, lookup = max(self._lookup.items(), key=lambda item: len(item[1]))
            block_hash = next(iter(lookup))
            self._drop(lookup.pop(block_hash), self._bit_of[worker])
            self._entries -= 1
            self.evicted_blocks += 1

    def _removed(self, worker: int, block_hashes: Sequence[int]) -> None:
        lookup = self._lookup.get(worker)
        if lookup is None:
            return
        bit = self._bit_of[worker]
        for h in block_hashes:
            seq = lookup.pop(h, None)
            if seq is not None:
                self._entries -= 1
                self._drop(seq, bit)

    def _drop(self, seq: int, bit: int) -> None:
        holders = self._holders
        mask = holders.get(seq, 0) & ~bit
        if mask:
            holders[seq] = mask
        else:
            holders.pop(seq, None)

    def clear_worker(self, worker: int) -> None:
        """Forget every block of `worker` (a `cleared` event); the worker stays known."""
        lookup = self._lookup.get(worker)
        if not lookup:
            return
        bit = self._bit_of[worker]
        for seq in lookup.values():
            self._drop(seq, bit)
        self._entries -= len(lookup)
        lookup.clear()

    def remove_worker(self, worker: int) -> None:
        """The worker left (its instance key is gone): its blocks go with it."""
        self.clear_worker(worker)
        bit = self._bit_of.pop(worker, None)
        if bit is not None:
            del self._worker_of_bit[bit]
            del self._lookup[worker]
            self._free_bits.append(bit.bit_length() - 1)

    # -- queries ------------------------------------------------------------------------------

    def find_matches(
        self, local_hashes: Sequence[int], with_tree_sizes: bool = True
    ) -> OverlapScores:
        """Per worker, the number of consecutive blocks of `local_hashes` it holds (upstream's
        query, by the blocks' local `tokens_hash`es)."""
        return self.find_sequence_matches(sequence_hashes(local_hashes), with_tree_sizes)

    def find_sequence_matches(
        self, seq_hashes: Sequence[int], with_tree_sizes: bool = True
    ) -> OverlapScores:
        """`find_matches` for a request whose sequence hashes are known already (the router
        computes them once per request for its load tracking too).

        `with_tree_sizes=False` leaves `tree_sizes` empty (the router asks `tree_size()` only
        when it has a tie to break).
        """
        scores: dict[int, int] = {}
        holders = self._holders
        active = holders.get(seq_hashes[0], 0) if seq_hashes else 0
        depth = 1
        if active:
            for h in seq_hashes[1:]:
                still = holders.get(h, 0) & active
                if still != active:
                    self._score_bits(active & ~still, depth, scores)
                    active = still
                    if not active:
                        break
                depth += 1
            if active:
                self._score_bits(active, depth, scores)
        return OverlapScores(scores, self.tree_sizes() if with_tree_sizes else {})

    def _score_bits(self, mask: int, depth: int, scores: dict[int, int]) -> None:
        worker_of_bit = self._worker_of_bit
        while mask:
            low = mask & -mask
            scores[worker_of_bit[low]] = depth
            mask ^= low

    def tree_size(self, worker: int) -> int:
        """Blocks `worker` holds."""
        lookup = self._lookup.get(worker)
        return 0 if lookup is None else len(lookup)

    def tree_sizes(self) -> dict[int, int]:
        """Blocks held, per known worker."""
        return {w: len(lookup) for w, lookup in self._lookup.items()}

    def workers(self) -> list[int]:
        """Workers that published at least one event still applied (and were not removed)."""
        return list(self._lookup)

    def blocks_of(self, worker: int) -> set[int]:
        """The engine block hashes `worker` holds, as announced."""
        return set(self._lookup.get(worker, ()))

    def num_entries(self) -> int:
        """(worker, block) entries held: what `max_blocks` bounds."""
        return self._entries

    def num_nodes(self) -> int:
        """Distinct blocks held by at least one worker (a prefix shared by many counts once)."""
        return len(self._holders)


__all__ = ["DEFAULT_MAX_BLOCKS", "OverlapScores", "ParentBlockNotFound", "RadixIndexer"]
