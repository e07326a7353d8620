"""Load side of KV routing: what each worker is busy with, and the cost of one more request.

Upstream (`scheduler.rs`, `sequence.rs`) tracks, per worker, the requests the router sent it:
their prefill tokens until the prefill is done, and the KV blocks they occupy until they are
freed. A request's full blocks are named by their sequence hashes, so requests that share a
prefix on one worker share those blocks; a partial tail block belongs to its request alone.

    prefill_tokens = active_prefill_tokens + isl - overlap * block_size
    decode_blocks  = active_blocks + request blocks not already active on the worker
    logit          = w * prefill_tokens / block_size + decode_blocks      (lower is better)

That is the `blocks` cost (`--router-cost blocks`). The `predicted` cost (the default) is the
predicted time to first token in seconds (`dynamo.llm.kv.ttft`), from the same tracking: the
prefill tokens queued on the worker, plus the request's own after its overlap, plus the
requests the worker reports waiting beyond the router's own (at the mean prefill size), its
active blocks, and whether it is running anything at all.

Temperature 0 takes the argmin, ties to the worker with the smaller radix tree, remaining ties
at random (so fresh, identical workers share the load). Above 0 the logits are normalised to
`-v / (max - min)`, divided by the temperature and sampled from their softmax.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from dynamo.llm.kv.ttft import TtftFeatures, TtftModel

#: EWMA weight of one request in the mean prefill size (what an unknown waiting request costs).
MEAN_PREFILL_ALPHA = 0.05


class SizeLookup(Protocol):
    """Tree size per worker: a dict, or the router's lazy view."""

    def get(self, key: int, default: int, /) -> int: ...


@dataclass(frozen=True, slots=True)
class RouterConfigOverride:
    """Per-request overrides (upstream `router_config_override`); None keeps the router's."""

    overlap_score_weight: float | None = None
    router_temperature: float | None = None


@dataclass(slots=True)
class _Request:
    worker: int
    prefill_tokens: int
    blocks: tuple[int, ...]
    partial: bool
    prefill_done: bool = False


class _WorkerLoad:
    __slots__ = ("active_prefill_tokens", "block_refs", "partial_blocks", "prefilling", "requests")

    def __init__(self) -> None:
        self.active_prefill_tokens = 0
        #: Requests routed here that have not answered yet.
        self.prefilling = 0
        #: sequence hash → active requests holding that block (a Counter: `update` counts a
        #: whole request's blocks in C).
        self.block_refs: Counter[int] = Counter()
        self.partial_blocks = 0
        self.requests = 0

    @property
    def active_blocks(self) -> int:
        return len(self.block_refs) + self.partial_blocks


class KvScheduler:
    """Per-worker active sequences and the worker choice; the router feeds it overlap scores."""

    def __init__(
        self,
        block_size: int,
        overlap_score_weight: float = 1.0,
        temperature: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if block_size <= 0:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.block_size = block_size
        self.overlap_score_weight = overlap_score_weight
        self.temperature = temperature
        self._rng = rng or random.Random()
        self._loads: dict[int, _WorkerLoad] = {}
        self._requests: dict[str, _Request] = {}
        #: Mean prefill tokens of a routed request (after its overlap).
        self.mean_prefill_tokens = 0.0

    # -- cost and choice ------------------------------------------------------------------------

    def logits(
        self,
        workers: Sequence[int],
        isl: int,
        seq_hashes: Sequence[int],
        overlaps: Mapping[int, int],
        overlap_score_weight: float | None = None,
    ) -> list[float]:
        """The cost of sending this request to each of `workers`, in the same order.

        `seq_hashes` are the request's full blocks' sequence hashes, from its first block.
        """
        w = self.overlap_score_weight if overlap_score_weight is None else overlap_score_weight
        bs = self.block_size
        request_blocks = -(-isl // bs)
        partial = request_blocks - len(seq_hashes)
        n_full = len(seq_hashes)
        first = seq_hashes[0] if seq_hashes else None
        loads = self._loads
        out: list[float] = []
        for worker in workers:
            load = loads.get(worker)
            overlap = overlaps.get(worker, 0)
            prefill = max(isl - overlap * bs, 0)
            if load is None:
                decode = request_blocks
            else:
                prefill += load.active_prefill_tokens
                refs = load.block_refs
                # Most workers have nothing of this prompt active: one lookup says so.
                new = n_full - _active_prefix(refs, seq_hashes) if first in refs else n_full
                decode = load.active_blocks + new + partial
            out.append(w * prefill / bs + decode)
        return out

    def predicted_ttfts(
        self,
        workers: Sequence[int],
        isl: int,
        seq_hashes: Sequence[int],
        overlaps: Mapping[int, int],
        model: TtftModel,
        waiting: Mapping[int, int] | None = None,
        prefill_weight: float = 1.0,
        capacity: Mapping[int, int] | None = None,
    ) -> tuple[list[float], list[TtftFeatures]]:
        """The predicted seconds to first token on each of `workers`, and what each was
        predicted from. `waiting`: requests each worker reports waiting (its load metrics).

        A prefix that requests in flight on a worker hold counts as cached there (`overlap`):
        the engine shares their blocks, and their prefill is already in the worker's queue.
        `capacity`: each worker's KV blocks (its load metrics); a worker that cannot fit the
        request's new blocks beside its active ones is predicted to make it wait for a running
        request to end (`model.request_s`)."""
        bs = self.block_size
        loads = self._loads
        mean = self.mean_prefill_tokens
        costs: list[float] = []
        features: list[TtftFeatures] = []
        request_blocks = -(-isl // bs)
        predict = model.predictor(prefill_weight)
        for worker in workers:
            load = loads.get(worker)
            blocks = 0
            own_waiting = 0
            busy = 0.0
            if load is None:
                overlap = overlaps.get(worker, 0)
                ahead = max(isl - overlap * bs, 0)
            else:
                overlap = self.overlap(worker, overlaps.get(worker, 0), seq_hashes)
                ahead = max(isl - overlap * bs, 0) + load.active_prefill_tokens
                blocks = load.active_blocks
                own_waiting = load.prefilling
                busy = 1.0 if load.requests else 0.0
            if waiting is not None:
                # Requests the worker has queued beyond the ones this router sent it.
                ahead += max(waiting.get(worker, 0) - own_waiting, 0) * mean
            f = TtftFeatures(ahead, blocks, busy)
            features.append(f)
            cost = predict(worker, f)
            total = capacity.get(worker, 0) if capacity is not None else 0
            if total and blocks + request_blocks - overlap > total:
                cost += model.request_s
            costs.append(cost)
        return costs, features

    def overlap(self, worker: int, cached_blocks: int, seq_hashes: Sequence[int]) -> int:
        """The request's leading blocks the worker has: `cached_blocks` (from its KV events),
        or more when requests in flight there hold a longer prefix of it."""
        load = self._loads.get(worker)
        if load is None or not seq_hashes or seq_hashes[0] not in load.block_refs:
            return cached_blocks
        return max(cached_blocks, _active_prefix(load.block_refs, seq_hashes))

    def choose(
        self,
        workers: Sequence[int],
        logits: Sequence[float],
        tree_sizes: SizeLookup,
        temperature: float | None = None,
    ) -> int:
        """Pick a worker from its logits (see the module docstring)."""
        if not workers:
            raise ValueError("no workers to choose from")
        t = self.temperature if temperature is None else temperature
        if t <= 0:
            best = min(logits)
            tied = [w for w, v in zip(workers, logits, strict=True) if v == best]
            if len(tied) > 1:
                smallest = min(tree_sizes.get(w, 0) for w in tied)
                tied = [w for w in tied if tree_sizes.get(w, 0) == smallest]
            return tied[0] if len(tied) == 1 else self._rng.choice(tied)
        probs = softmax_probabilities(logits, t)
        return self._rng.choices(workers, weights=probs, k=1)[0]

    # -- request life cycle -----------------------------------------------------------------------

    def add_request(
        self,
        request_id: str,
        worker: int,
        isl_tokens: int,
        overlap_blocks: int,
        seq_hashes: Sequence[int],
    ) -> None:
        """The request was sent to `worker`: count its prefill and its blocks there."""
        if request_id in self._requests:
            self.free(request_id)
        load = self._loads.get(worker)
        if load is None:
            load = self._loads[worker] = _WorkerLoad()
        prefill = max(isl_tokens - overlap_blocks * self.block_size, 0)
        partial = -(-isl_tokens // self.block_size) > len(seq_hashes)
        blocks = tuple(seq_hashes)
        load.block_refs.update(blocks)
        load.partial_blocks += partial
        load.active_prefill_tokens += prefill
        load.prefilling += 1
        load.requests += 1
        self.mean_prefill_tokens += MEAN_PREFILL_ALPHA * (prefill - self.mean_prefill_tokens)
        self._requests[request_id] = _Request(worker, prefill, blocks, partial)

    def mark_prefill_completed(self, request_id: str) -> None:
        """The first token came back: the request's prefill no longer loads its worker."""
        req = self._requests.get(request_id)
        if req is None or req.prefill_done:
            return
        req.prefill_done = True
        load = self._loads.get(req.worker)
        if load is not None:
            load.active_prefill_tokens -= req.prefill_tokens
            load.prefilling -= 1

    def free(self, request_id: str) -> None:
        """The request ended (any way): release its prefill tokens and blocks."""
        req = self._requests.pop(request_id, None)
        if req is None:
            return
        load = self._loads.get(req.worker)
        if load is None:
            return
        if not req.prefill_done:
            load.active_prefill_tokens -= req.prefill_tokens
            load.prefilling -= 1
        refs = load.block_refs
        for h in req.blocks:
            n = refs[h] - 1
            if n:
                refs[h] = n
            else:
                del refs[h]
        load.partial_blocks -= req.partial
        load.requests -= 1

    def remove_worker(self, worker: int) -> None:
        """Forget a worker and the requests it had (they fail or migrate elsewhere)."""
        self._loads.pop(worker, None)
        for rid in [rid for rid, r in self._requests.items() if r.worker == worker]:
            del self._requests[rid]

    # -- introspection ---------------------------------------------------------------------------

    def worker_of(self, request_id: str) -> int | None:
        req = self._requests.get(request_id)
        return None if req is None else req.worker

    def load(self, worker: int) -> dict[str, int]:
        """`{active_prefill_tokens, active_blocks, active_requests}` of one worker."""
        load = self._loads.get(worker)
        if load is None:
            return {"active_prefill_tokens": 0, "active_blocks": 0, "active_requests": 0}
        return {
            "active_prefill_tokens": load.active_prefill_tokens,
            "active_blocks": load.active_blocks,
            "active_requests": load.requests,
        }

    def __len__(self) -> int:
        return len(self._requests)


def _active_prefix(refs: Mapping[int, int], seq_hashes: Sequence[int]) -> int:
    """How many leading blocks of the request are already active on the worker.

    Sequence hashes are chained and every tracked request holds its whole chain from the first
    block, so if block i is active, blocks 0..i are too: the active ones form a prefix, found by
    binary search in log2(n) lookups instead of n.
    """
    lo, hi = 0, len(seq_hashes)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if seq_hashes[mid - 1] in refs:
            lo = mid
        else:
            hi = mid - 1
    return lo


def softmax_probabilities(logits: Sequence[float], temperature: float) -> list[float]:
    """Upstream's sampling weights: `softmax(-v / (max - min) / T)`; uniform when all equal."""
    lo, hi = min(logits), max(logits)
    span = hi - lo
    if span <= 0:
        return [1.0 / len(logits)] * len(logits)
    scaled = [-(v / span) / temperature for v in logits]
    top = max(scaled)
    exps = [math.exp(s - top) for s in scaled]
    total = sum(exps)
    return [e / total for e in exps]


__all__ = ["KvScheduler", "RouterConfigOverride", "softmax_probabilities"]
