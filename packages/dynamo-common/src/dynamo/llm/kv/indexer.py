"""The router's radix tree: which worker holds which KV blocks (upstream `RadixTree`).

A node is one block position in some prompt: the path of `tokens_hash`es from the root spells
the prompt's full blocks, so two prompts share nodes exactly as long as they share a prefix.
Each node keeps the set of workers that hold that block; each worker keeps a map from its own
opaque `block_hash` to the node, which is how `stored` finds its parent and `removed` its
blocks. `find_matches` walks a request's local block hashes from the root and reports, per
worker, how many consecutive blocks from the start it already holds.

Matching is the hot path (one walk per routed request): it keeps the set of workers still
matching and only touches a worker when it drops out, so one step costs one C-level set
comparison, not a Python loop over workers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from dynamo.llm.kv.events import Cleared, Removed, RouterEvent, Stored

log = logging.getLogger(__name__)


class ParentBlockNotFound(LookupError):
    """A `stored` event names a parent block the worker never announced (or already removed)."""


@dataclass(slots=True)
class OverlapScores:
    #: worker → number of consecutive blocks, from the first, that the worker holds.
    scores: dict[int, int] = field(default_factory=dict)
    #: worker → number of blocks the worker holds in total (the tie-breaker: less is better).
    tree_sizes: dict[int, int] = field(default_factory=dict)


class _Node:
    __slots__ = ("children", "key", "parent", "workers")

    def __init__(self, parent: _Node | None, key: int) -> None:
        self.parent = parent
        self.key = key
        self.children: dict[int, _Node] = {}
        self.workers: set[int] = set()


class RadixIndexer:
    """Applies `RouterEvent`s and answers overlap queries. Not thread-safe: one loop owns it."""

    def __init__(self) -> None:
        self._root = _Node(None, 0)
        self._lookup: dict[int, dict[int, _Node]] = {}
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

    def _stored(self, worker: int, data: Stored) -> None:
        lookup = self._lookup.setdefault(worker, {})
        if data.parent_hash is None:
            node = self._root
        else:
            found = lookup.get(data.parent_hash)
            if found is None:
                raise ParentBlockNotFound(f"parent block {data.parent_hash} is not known")
            node = found
        for block in data.blocks:
            child = node.children.get(block.tokens_hash)
            if child is None:
                child = _Node(node, block.tokens_hash)
                node.children[block.tokens_hash] = child
            child.workers.add(worker)
            lookup[block.block_hash] = child
            node = child

    def _removed(self, worker: int, block_hashes: Sequence[int]) -> None:
        lookup = self._lookup.get(worker)
        if lookup is None:
            return
        for h in block_hashes:
            node = lookup.pop(h, None)
            if node is not None:
                node.workers.discard(worker)
                self._prune(node)

    def _prune(self, node: _Node) -> None:
        """Drop empty leaves, walking up; a node that still has children stays."""
        while node.parent is not None and not node.workers and not node.children:
            parent = node.parent
            del parent.children[node.key]
            node.parent = None
            node = parent

    def clear_worker(self, worker: int) -> None:
        """Forget every block of `worker` (a `cleared` event); the worker stays known."""
        lookup = self._lookup.get(worker)
        if not lookup:
            return
        nodes = list(lookup.values())
        lookup.clear()
        for node in nodes:
            node.workers.discard(worker)
        for node in nodes:
            self._prune(node)

    def remove_worker(self, worker: int) -> None:
        """The worker left (its instance key is gone): its blocks go with it."""
        self.clear_worker(worker)
        self._lookup.pop(worker, None)

    # -- queries ------------------------------------------------------------------------------

    def find_matches(
        self, local_hashes: Sequence[int], with_tree_sizes: bool = True
    ) -> OverlapScores:
        """Per worker, the number of consecutive blocks of `local_hashes` it holds.

        `with_tree_sizes=False` leaves `tree_sizes` empty (the router asks `tree_size()` only
        when it has a tie to break).
        """
        scores: dict[int, int] = {}
        node = self._root
        active: set[int] | None = None
        depth = 0
        for h in local_hashes:
            child = node.children.get(h)
            if child is None:
                break
            workers = child.workers
            if active is None:
                if not workers:
                    break
                active = set(workers)
            elif not active.issubset(workers):
                for w in active.difference(workers):
                    scores[w] = depth
                active.intersection_update(workers)
                if not active:
                    break
            depth += 1
            node = child
        if active:
            for w in active:
                scores[w] = depth
        return OverlapScores(scores, self.tree_sizes() if with_tree_sizes else {})

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

    def num_nodes(self) -> int:
        """Blocks in the tree (a prefix shared by many workers counts once)."""
        count, stack = 0, [self._root]
        while stack:
            node = stack.pop()
            count += len(node.children)
            stack.extend(node.children.values())
        return count


__all__ = ["OverlapScores", "ParentBlockNotFound", "RadixIndexer"]
