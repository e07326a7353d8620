"""Worker load metrics: upstream's `ForwardPassMetrics` and its `LoadEvent` envelope, and the
table a router keeps of the latest ones per worker.

On the wire (JSON, one NATS message per update, subject `namespace.{ns}.kv_metrics`):

    {"worker_id": 7, "data": {
        "worker_stats": {"data_parallel_rank": 0, "request_active_slots": 3,
                         "request_total_slots": 256, "num_requests_waiting": 0},
        "kv_stats": {"kv_active_blocks": 40, "kv_total_blocks": 16384,
                     "gpu_cache_usage_perc": 0.0024, "gpu_prefix_cache_hit_rate": 0.5},
        "spec_decode_stats": null}}

This is upstream's `LoadEvent { worker_id, data: ForwardPassMetrics }` published by its
`WorkerMetricsPublisher` on the *namespace's* `kv_metrics` subject (`namespace.publish(
KV_METRICS_SUBJECT, ..)`), not the component's: several components of one namespace share it,
and a reader keeps the worker ids it knows (the instances of its own endpoint). The worker id is
the worker's primary lease, i.e. its instance id. The publisher is in
`dynamo.llm.kv.metrics_publisher`.

The classes take upstream's constructor arguments, positionally or by name
(`WorkerStats(request_active_slots, request_total_slots, num_requests_waiting,
data_parallel_rank=None)`, `KvStats(kv_active_blocks, kv_total_blocks, gpu_cache_usage_perc,
gpu_prefix_cache_hit_rate)`, `ForwardPassMetrics(worker_stats, kv_stats,
spec_decode_stats=None)`). Unknown fields in received JSON are ignored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from dynamo.llm.schema import KV_METRICS, kv_metrics_subject

log = logging.getLogger(__name__)

#: Upstream's subject (under the namespace) and endpoint (under the component) names.
KV_METRICS_SUBJECT = KV_METRICS
KV_METRICS_ENDPOINT = "load_metrics"


class _Positional(BaseModel):
    """A model that also takes its fields positionally, in declaration order, as upstream's
    constructors do. (Pydantic calls an overridden `__init__` when validating too, with
    keywords only, so parsing goes through here unchanged.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            names = list(type(self).model_fields)
            if len(args) > len(names):
                raise TypeError(f"{type(self).__name__} takes at most {len(names)} arguments")
            for name, value in zip(names, args, strict=False):
                if name in kwargs:
                    raise TypeError(f"{type(self).__name__} got two values for {name!r}")
                kwargs[name] = value
        super().__init__(**kwargs)


class WorkerStats(_Positional):
    """Request slots of one worker (or one data-parallel rank of it)."""

    request_active_slots: int
    request_total_slots: int
    num_requests_waiting: int
    data_parallel_rank: int | None = None


class KvStats(_Positional):
    """KV cache use: blocks in use, blocks in all, their ratio, and the prefix-cache hit rate."""

    kv_active_blocks: int
    kv_total_blocks: int
    gpu_cache_usage_perc: float
    gpu_prefix_cache_hit_rate: float


class SpecDecodeStats(_Positional):
    """Speculative decoding counters (carried along; nothing here reads them)."""

    num_spec_tokens: int | None = None
    num_drafts: int | None = None
    num_draft_tokens: int | None = None
    num_accepted_tokens: int | None = None
    num_accepted_tokens_per_pos: list[int] | None = None


class ForwardPassMetrics(_Positional):
    """What a worker reports after a forward pass (a scheduler step)."""

    worker_stats: WorkerStats
    kv_stats: KvStats
    spec_decode_stats: SpecDecodeStats | None = None

    @classmethod
    def zero(cls) -> ForwardPassMetrics:
        """All counters 0: what a worker that reported nothing yet answers (as upstream)."""
        return cls(
            worker_stats=WorkerStats(
                request_active_slots=0, request_total_slots=0, num_requests_waiting=0
            ),
            kv_stats=KvStats(
                kv_active_blocks=0,
                kv_total_blocks=0,
                gpu_cache_usage_perc=0.0,
                gpu_prefix_cache_hit_rate=0.0,
            ),
        )


class LoadEvent(BaseModel):
    """The message on the wire: who reports, and what."""

    worker_id: int
    data: ForwardPassMetrics


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    """One worker's latest load, summed over its data-parallel ranks."""

    request_active_slots: int
    request_total_slots: int
    num_requests_waiting: int
    kv_active_blocks: int
    kv_total_blocks: int
    #: As reported (weighted by each rank's blocks when there are several ranks).
    gpu_cache_usage_perc: float
    #: The mean over ranks.
    gpu_prefix_cache_hit_rate: float


class WorkerLoads:
    """The latest `ForwardPassMetrics` of each worker and rank, fed raw `kv_metrics` messages.

    A reader that knows which workers are alive (a router: its endpoint's instances) calls
    `remove_worker` when one leaves, reads only live ones, and `prune`s the rest now and then:
    workers of other components of the namespace publish on the same subject.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # worker id -> dp rank -> (when received, metrics)
        self._latest: dict[int, dict[int, tuple[float, ForwardPassMetrics]]] = {}
        #: Messages applied, and messages that were not a valid `LoadEvent` (ignored).
        self.received = 0
        self.invalid = 0

    def on_message(self, payload: bytes | str) -> bool:
        """Apply one message; False (and counted in `invalid`) when it is not a `LoadEvent`."""
        try:
            event = LoadEvent.model_validate_json(payload)
        except ValidationError as e:
            self.invalid += 1
            if self.invalid == 1:
                log.warning("ignoring a load metrics message that is not a LoadEvent: %s", e)
            return False
        self.update(event.worker_id, event.data)
        return True

    def update(self, worker_id: int, metrics: ForwardPassMetrics) -> None:
        rank = metrics.worker_stats.data_parallel_rank or 0
        self._latest.setdefault(worker_id, {})[rank] = (self._clock(), metrics)
        self.received += 1

    def remove_worker(self, worker_id: int) -> None:
        self._latest.pop(worker_id, None)

    def workers(self) -> list[int]:
        return list(self._latest)

    def prune(self, live: Iterable[int], max_age: float) -> None:
        """Forget workers that are not `live` and reported nothing for `max_age` seconds."""
        keep = set(live)
        oldest = self._clock() - max_age
        for worker in [w for w in self._latest if w not in keep]:
            if max(t for t, _ in self._latest[worker].values()) < oldest:
                del self._latest[worker]

    def metrics(self, worker_id: int) -> dict[int, ForwardPassMetrics]:
        """The latest metrics of each rank of a worker (empty when it reported none)."""
        return {rank: m for rank, (_, m) in self._latest.get(worker_id, {}).items()}

    def waiting(self, worker_id: int) -> int:
        """Requests the worker reports queued, over its ranks (0 when it reported none); cheap
        enough for the router to read per worker per decision."""
        ranks = self._latest.get(worker_id)
        if not ranks:
            return 0
        return sum(m.worker_stats.num_requests_waiting for _, m in ranks.values())

    def total_blocks(self, worker_id: int) -> int:
        """The worker's KV blocks over its ranks (0 when it reported none)."""
        ranks = self._latest.get(worker_id)
        if not ranks:
            return 0
        return sum(m.kv_stats.kv_total_blocks for _, m in ranks.values())

    def load(self, worker_id: int) -> WorkerLoad | None:
        """A worker's load over all its ranks; None when it reported none."""
        ranks = [m for _, m in self._latest.get(worker_id, {}).values()]
        if not ranks:
            return None
        total_blocks = sum(m.kv_stats.kv_total_blocks for m in ranks)
        if len(ranks) == 1:
            usage = ranks[0].kv_stats.gpu_cache_usage_perc
        elif total_blocks:
            usage = (
                sum(m.kv_stats.gpu_cache_usage_perc * m.kv_stats.kv_total_blocks for m in ranks)
                / total_blocks
            )
        else:
            usage = sum(m.kv_stats.gpu_cache_usage_perc for m in ranks) / len(ranks)
        return WorkerLoad(
            request_active_slots=sum(m.worker_stats.request_active_slots for m in ranks),
            request_total_slots=sum(m.worker_stats.request_total_slots for m in ranks),
            num_requests_waiting=sum(m.worker_stats.num_requests_waiting for m in ranks),
            kv_active_blocks=sum(m.kv_stats.kv_active_blocks for m in ranks),
            kv_total_blocks=total_blocks,
            gpu_cache_usage_perc=usage,
            gpu_prefix_cache_hit_rate=(
                sum(m.kv_stats.gpu_prefix_cache_hit_rate for m in ranks) / len(ranks)
            ),
        )


def as_forward_pass_metrics(value: ForwardPassMetrics | Any) -> ForwardPassMetrics:
    """A `ForwardPassMetrics` as is, or one validated from a mapping of the same shape."""
    if isinstance(value, ForwardPassMetrics):
        return value
    return ForwardPassMetrics.model_validate(value)


__all__ = [
    "KV_METRICS_ENDPOINT",
    "KV_METRICS_SUBJECT",
    "ForwardPassMetrics",
    "KvStats",
    "LoadEvent",
    "SpecDecodeStats",
    "WorkerLoad",
    "WorkerLoads",
    "WorkerStats",
    "as_forward_pass_metrics",
    "kv_metrics_subject",
]
