"""`KvRouter`: the KV-aware worker choice, independent of any transport.

The frontend wires it like this (one router per served model, i.e. per worker component):

    router = KvRouter(block_size=card.kv_cache_block_size)
    # event plane: every message on `namespace.{ns}.component.{comp}.kv_events`
    router.on_event(msg.data)
    # discovery: an instance key was deleted
    router.remove_worker(instance_id)
    # request plane, per request
    worker, overlap = router.select(token_ids, client.instance_ids(), request_id)
    ... send to `worker`; on the first token: router.mark_prefill_completed(request_id)
    ... when the worker says how much of the prompt it had cached (`completion_usage.
        prompt_tokens_details.cached_tokens`): router.report_cached_tokens(request_id, n)
    ... when the stream ends, however it ends: router.free(request_id)

The cost is `predicted` (the predicted time to first token, learned from the first tokens the
router sees: `dynamo.llm.kv.ttft`) or `blocks` (upstream's, `dynamo.llm.kv.scheduler`).

Workers that never published an event are still routed, by load alone (their overlap is 0);
upstream degrades like that silently. Here `workers_without_events()` names them and, once such
a worker has finished a few requests that each had a full block (so a publishing engine would
have announced something), the router logs one warning for it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamo.llm.kv.events import KvEventError, RouterEvent, parse_router_event
from dynamo.llm.kv.hashing import local_block_hashes, sequence_hashes
from dynamo.llm.kv.indexer import DEFAULT_MAX_BLOCKS, OverlapScores, RadixIndexer
from dynamo.llm.kv.scheduler import KvScheduler, RouterConfigOverride
from dynamo.llm.kv.ttft import TtftFeatures, TtftModel

#: The router's costs (`--router-cost`): see the module docstring.
ROUTER_COSTS = ("predicted", "blocks")

log = logging.getLogger(__name__)

#: Requests with at least one full block a worker must finish, without any KV event from it,
#: before the router warns that it routes to that worker by load alone.
SILENT_WORKER_THRESHOLD = 3


@dataclass(slots=True)
class KvRouterStats:
    """Counters for the frontend's metrics."""

    #: worker → routing decisions that picked it.
    decisions: dict[int, int] = field(default_factory=dict)
    #: Sum over decisions of the request's blocks, and of the chosen worker's overlap blocks:
    #: their ratio is the KV hit rate.
    request_blocks: int = 0
    overlap_blocks: int = 0
    events_received: int = 0
    events_malformed: int = 0
    #: Over the requests whose worker reported its prefix-cache hits: the cached tokens the
    #: router predicted (overlap blocks x block size), the ones the worker reused, and the sum
    #: of their absolute differences. A drifting index shows as a gap between the first two.
    cache_reports: int = 0
    predicted_cached_tokens: int = 0
    actual_cached_tokens: int = 0
    cached_tokens_abs_error: int = 0

    @property
    def hit_rate(self) -> float:
        return self.overlap_blocks / self.request_blocks if self.request_blocks else 0.0


@dataclass(slots=True)
class _Pending:
    worker: int
    had_full_block: bool
    #: Overlap blocks the router predicted on the chosen worker.
    overlap: int = 0
    #: When it was routed, and what its time to first token was predicted from.
    routed_at: float = 0.0
    features: TtftFeatures | None = None
    cache_reported: bool = False


class KvRouter:
    """Radix indexer + active-sequence scheduler; see the module docstring for the wiring."""

    def __init__(
        self,
        block_size: int,
        overlap_score_weight: float = 1.0,
        temperature: float = 0.0,
        seed: int | None = None,
        max_index_blocks: int | None = DEFAULT_MAX_BLOCKS,
        cost: str = "predicted",
        waiting: Callable[[int], int] | None = None,
        capacity: Callable[[int], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`waiting(worker)` and `capacity(worker)`: the requests the worker reports queued and
        its KV blocks (its load metrics; 0 when unknown), read by the `predicted` cost; `clock`
        times the first tokens and request ends it learns from."""
        if cost not in ROUTER_COSTS:
            raise ValueError(f"unknown router cost {cost!r} (one of {', '.join(ROUTER_COSTS)})")
        self.block_size = block_size
        self.cost = cost
        self.ttft = TtftModel()
        self._waiting = waiting
        self._capacity = capacity
        self._clock = clock
        self.indexer = RadixIndexer(max_index_blocks)
        self.scheduler = KvScheduler(
            block_size, overlap_score_weight, temperature, random.Random(seed)
        )
        self.stats = KvRouterStats()
        self._pending: dict[str, _Pending] = {}
        self._heard_from: set[int] = set()
        self._silent_done: dict[int, int] = {}
        self._warned: set[int] = set()

    # -- event plane -------------------------------------------------------------------------------

    def on_event(self, payload: bytes | str | dict[str, Any]) -> bool:
        """Apply one raw event message; False when it was malformed or had to be dropped."""
        self.stats.events_received += 1
        try:
            event = parse_router_event(payload)
        except KvEventError as e:
            self.stats.events_malformed += 1
            log.warning("malformed KV event dropped: %s", e)
            return False
        return self.apply_event(event)

    def apply_event(self, event: RouterEvent) -> bool:
        self._heard_from.add(event.worker_id)
        return self.indexer.apply_event(event)

    def remove_worker(self, worker: int) -> None:
        """The worker left: its blocks and its active requests go with it."""
        self.indexer.remove_worker(worker)
        self.scheduler.remove_worker(worker)
        self.ttft.remove_worker(worker)
        self._heard_from.discard(worker)
        self._silent_done.pop(worker, None)
        self._warned.discard(worker)
        for rid in [rid for rid, p in self._pending.items() if p.worker == worker]:
            del self._pending[rid]

    # -- request plane ----------------------------------------------------------------------------

    def find_matches(self, token_ids: Sequence[int]) -> OverlapScores:
        """Overlap scores of a prompt, without routing it."""
        return self.indexer.find_matches(local_block_hashes(token_ids, self.block_size))

    def select(
        self,
        token_ids: Sequence[int],
        workers: Sequence[int],
        request_id: str,
        overrides: RouterConfigOverride | Mapping[str, Any] | None = None,
    ) -> tuple[int, int]:
        """Choose a worker for the prompt and start tracking the request there.

        Returns `(worker_id, overlap_blocks)`. `overrides` is a `RouterConfigOverride` or a
        dict with `overlap_score_weight` / `router_temperature` (upstream's nvext field).
        """
        if not workers:
            raise ValueError("no workers to route to")
        weight, temperature = _override_values(overrides)
        local = local_block_hashes(token_ids, self.block_size)
        seq = sequence_hashes(local)
        matches = self.indexer.find_sequence_matches(seq, with_tree_sizes=False)
        sched = self.scheduler
        features: TtftFeatures | None = None
        if self.cost == "predicted":
            waiting = capacity = None
            if self._waiting is not None:
                waiting = {w: self._waiting(w) for w in workers}
            if self._capacity is not None:
                capacity = {w: self._capacity(w) for w in workers}
            logits, all_features = sched.predicted_ttfts(
                workers,
                len(token_ids),
                seq,
                matches.scores,
                self.ttft,
                waiting,
                sched.overlap_score_weight if weight is None else weight,
                capacity,
            )
            if len(workers) == 1:
                worker, features = workers[0], all_features[0]
            else:
                worker = sched.choose(workers, logits, _TreeSizes(self.indexer), temperature)
                features = all_features[workers.index(worker)]
        elif len(workers) == 1:
            worker = workers[0]
        else:
            logits = sched.logits(workers, len(token_ids), seq, matches.scores, weight)
            worker = sched.choose(workers, logits, _TreeSizes(self.indexer), temperature)
        overlap = matches.scores.get(worker, 0)
        if features is not None:  # predicted: a prefix active there counts as cached
            overlap = sched.overlap(worker, overlap, seq)
        sched.add_request(request_id, worker, len(token_ids), overlap, seq)
        self._pending[request_id] = _Pending(worker, bool(local), overlap, self._clock(), features)
        stats = self.stats
        stats.decisions[worker] = stats.decisions.get(worker, 0) + 1
        stats.request_blocks += -(-len(token_ids) // self.block_size)
        stats.overlap_blocks += overlap
        return worker, overlap

    def mark_prefill_completed(self, request_id: str) -> None:
        """The first token came back: the worker's prefill queue shrinks, and the time it took
        teaches the `predicted` cost."""
        pending = self._pending.get(request_id)
        if pending is not None and pending.features is not None:
            self.ttft.observe(pending.worker, pending.features, self._clock() - pending.routed_at)
            pending.features = None  # learned once
        self.scheduler.mark_prefill_completed(request_id)

    def report_cached_tokens(self, request_id: str, cached_tokens: int) -> None:
        """The worker reused `cached_tokens` of the prompt from its prefix cache: compared with
        what the router predicted (once per request)."""
        pending = self._pending.get(request_id)
        if pending is None or pending.cache_reported:
            return
        pending.cache_reported = True
        predicted = pending.overlap * self.block_size
        stats = self.stats
        stats.cache_reports += 1
        stats.predicted_cached_tokens += predicted
        stats.actual_cached_tokens += cached_tokens
        stats.cached_tokens_abs_error += abs(predicted - cached_tokens)

    def free(self, request_id: str) -> None:
        """The request ended, however it ended; safe to call twice."""
        self.scheduler.free(request_id)
        pending = self._pending.pop(request_id, None)
        if pending is None:
            return
        if self.cost == "predicted":
            self.ttft.observe_request(self._clock() - pending.routed_at)
        if not pending.had_full_block:
            return
        worker = pending.worker
        if worker in self._heard_from:
            return
        n = self._silent_done[worker] = self._silent_done.get(worker, 0) + 1
        if n >= SILENT_WORKER_THRESHOLD and worker not in self._warned:
            self._warned.add(worker)
            log.warning(
                "worker %x finished %d requests but published no KV events: it is routed by "
                "load alone (is its engine's KV event publishing on?)",
                worker,
                n,
            )

    # -- introspection -----------------------------------------------------------------------------

    def workers_without_events(self, workers: Sequence[int]) -> list[int]:
        """The workers among `workers` that never published a KV event."""
        return [w for w in workers if w not in self._heard_from]

    def worker_load(self, worker: int) -> dict[str, int]:
        """Active prefill tokens, blocks and requests the router accounts to `worker`."""
        return self.scheduler.load(worker)


class _TreeSizes:
    """A read-only view of per-worker tree sizes, computed only for the workers asked about."""

    __slots__ = ("_indexer",)

    def __init__(self, indexer: RadixIndexer) -> None:
        self._indexer = indexer

    def get(self, worker: int, default: int = 0) -> int:
        return self._indexer.tree_size(worker)


def _override_values(
    overrides: RouterConfigOverride | Mapping[str, Any] | None,
) -> tuple[float | None, float | None]:
    if overrides is None:
        return None, None
    if isinstance(overrides, RouterConfigOverride):
        return overrides.overlap_score_weight, overrides.router_temperature
    return overrides.get("overlap_score_weight"), overrides.get("router_temperature")


__all__ = ["ROUTER_COSTS", "SILENT_WORKER_THRESHOLD", "KvRouter", "KvRouterStats"]
