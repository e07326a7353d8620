"""Admission control: per model, at most N requests in the engine, a bounded FIFO queue behind
them, and a deadline on the whole request.

Beyond the limit a request waits its turn; beyond `queue_size` waiting it is refused at once with
a 429, and one that waited longer than `queue_timeout` gets a 503, both with `Retry-After`, so a
client (or a load balancer) learns to back off instead of hanging. The limit is the smaller of
`--max-concurrent-requests` and what the engines say they can serve: an engine with a fixed
number of sequences publishes it as `max_num_seqs` in its card's `runtime_config` (upstream's
field), and a model served by workers can take that many per live worker.

It wraps the model's engine, so every route that generates (chat, completions, responses,
messages, embeddings, and routes added later) is admitted the same way, after preprocessing (a
bad request is still a 400 at once) and before any engine work. The slot is held until the
stream ends or is closed. `request_timeout` bounds the request from then on, queue time
included: at the deadline the engine is told to stop and the client gets a 504.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from dynamo.frontend.flags import UsageError
from dynamo.frontend.readiness import model_workers
from dynamo.llm.errors import RequestTimeoutError, ServiceUnavailableError, TooManyRequestsError
from dynamo.runtime.context import Context

if TYPE_CHECKING:
    from dynamo.frontend.run_config import RunConfig

DEFAULT_QUEUE_SIZE = 100
#: How often a waiting request looks again at a limit that may have grown (a worker joined).
RECHECK_SECONDS = 0.25
_QUEUE_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(frozen=True)
class AdmissionOptions:
    #: In-flight requests per model (None: only what the engines publish, if anything).
    max_concurrent: int | None = None
    queue_size: int = DEFAULT_QUEUE_SIZE
    #: Seconds a request may wait in the queue (None: until admitted or the client leaves).
    queue_timeout: float | None = None
    #: Seconds a whole request may take, from admission on (None: no limit).
    request_timeout: float | None = None

    @classmethod
    def from_args(cls, args: RunConfig) -> AdmissionOptions:
        """From the flags; `UsageError` with one line for a bad value. Built once, with the
        `RunConfig` (its `admission`)."""
        checks = (
            ("max_concurrent_requests", "--max-concurrent-requests", 1),
            ("queue_size", "--queue-size", 0),
            ("queue_timeout", "--queue-timeout", None),
            ("request_timeout", "--request-timeout", None),
        )
        for dest, flag, least in checks:
            value = getattr(args, dest, None)
            if value is None:
                continue
            if least is not None and value < least:
                raise UsageError(f"{flag} must be at least {least} (got {value})")
            if least is None and not (value > 0 and math.isfinite(value)):
                raise UsageError(f"{flag} must be a number of seconds above 0 (got {value})")
        queue = getattr(args, "queue_size", None)
        return cls(
            max_concurrent=getattr(args, "max_concurrent_requests", None),
            queue_size=DEFAULT_QUEUE_SIZE if queue is None else queue,
            queue_timeout=getattr(args, "queue_timeout", None),
            request_timeout=getattr(args, "request_timeout", None),
        )


class AdmissionMetrics:
    """`{prefix}_queued_requests`, `_queue_time_seconds` and `_rejected_requests_total`."""

    def __init__(self, registry: CollectorRegistry, prefix: str):
        self.queued = Gauge(
            f"{prefix}_queued_requests",
            "Requests waiting for a free slot of their model",
            ["model"],
            registry=registry,
        )
        self.queue_time = Histogram(
            f"{prefix}_queue_time_seconds",
            "Time requests waited for a slot (admitted or not)",
            ["model"],
            buckets=_QUEUE_BUCKETS,
            registry=registry,
        )
        self.rejected = Counter(
            f"{prefix}_rejected_requests_total",
            "Requests refused by admission control, by reason "
            "(queue_full: 429, queue_timeout: 503, request_timeout: 504)",
            ["model", "reason"],
            registry=registry,
        )


class ModelGate:
    """One model's slots and its FIFO queue. Single event loop: no locks needed."""

    def __init__(
        self,
        model: str,
        options: AdmissionOptions,
        capacity: Callable[[], int | None],
        metrics: AdmissionMetrics,
    ):
        self.model = model
        self.options = options
        self.capacity = capacity
        self.metrics = metrics
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def limit(self) -> int | None:
        cap, n = self.capacity(), self.options.max_concurrent
        if cap is None:
            return n
        return max(cap, 1) if n is None else min(n, max(cap, 1))

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    def _grant(self) -> None:
        """Hand free slots to the oldest waiters."""
        limit = self.limit()
        while self._waiters and (limit is None or self.in_flight < limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)
        self.metrics.queued.labels(self.model).set(self.waiting)

    def release(self) -> None:
        self.in_flight -= 1
        self._grant()

    async def acquire(self, deadline: float | None = None) -> None:
        """Take a slot, waiting in line if there is none; raise 429/503/504 as the module says."""
        limit = self.limit()
        if limit is None or (self.in_flight < limit and not self.waiting):
            self.in_flight += 1
            return
        if self.waiting >= self.options.queue_size:
            self.metrics.rejected.labels(self.model, "queue_full").inc()
            raise TooManyRequestsError(
                f"model '{self.model}' is at capacity ({limit} requests running, "
                f"{self.options.queue_size} waiting): try again later",
                retry_after=1,
            )
        loop = asyncio.get_running_loop()
        start = loop.time()
        give_up = start + self.options.queue_timeout if self.options.queue_timeout else math.inf
        if deadline is not None:
            give_up = min(give_up, deadline)
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self.metrics.queued.labels(self.model).set(self.waiting)
        try:
            while not waiter.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(min(give_up, loop.time() + RECHECK_SECONDS)):
                        await asyncio.shield(waiter)
                if not waiter.done():
                    self._grant()  # the limit may have grown meanwhile
                if not waiter.done() and loop.time() >= give_up:
                    waiter.cancel()
                    self._reject_waiter(deadline is not None and give_up == deadline)
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # admitted just as we gave up: pass the slot on
            else:
                waiter.cancel()
            self.metrics.queued.labels(self.model).set(self.waiting)
            raise
        finally:
            self.metrics.queue_time.labels(self.model).observe(loop.time() - start)

    def _reject_waiter(self, request_deadline: bool) -> None:
        if request_deadline:
            self.metrics.rejected.labels(self.model, "request_timeout").inc()
            raise RequestTimeoutError(
                f"the request to model '{self.model}' timed out while waiting for a free slot"
            )
        self.metrics.rejected.labels(self.model, "queue_timeout").inc()
        raise ServiceUnavailableError(
            f"model '{self.model}' is at capacity: the request waited "
            f"{self.options.queue_timeout:g} s for a free slot",
            code="queue_timeout",
            retry_after=1,
        )


class AdmittedEngine:
    """The model's engine behind its gate, with the request deadline."""

    def __init__(self, engine: Any, gate: ModelGate, request_timeout: float | None):
        self.engine = engine
        self.gate = gate
        self.request_timeout = request_timeout

    async def generate(self, request: dict[str, Any], context: Context) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout if self.request_timeout else None
        await self.gate.acquire(deadline)
        try:
            stream = self.engine.generate(request, context)
            try:
                if deadline is None:
                    async for item in stream:
                        yield item
                    return
                while True:
                    try:
                        async with asyncio.timeout_at(deadline):
                            item = await anext(stream)
                    except StopAsyncIteration:
                        return
                    except TimeoutError:
                        context.kill()  # the engine stops generating for nobody
                        self.gate.metrics.rejected.labels(self.gate.model, "request_timeout").inc()
                        raise RequestTimeoutError(
                            f"the request took longer than --request-timeout "
                            f"{self.request_timeout:g} s"
                        ) from None
                    yield item
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
        finally:
            self.gate.release()


def served_capacity(model: Any) -> int | None:
    """Requests the model's engines can run at once: the card's `runtime_config.max_num_seqs`,
    times the live workers when the model is served by workers (None: not published)."""
    card = getattr(model, "card", None)
    per_engine = (card.runtime_config.get("max_num_seqs") if card is not None else None) or None
    if not isinstance(per_engine, int):
        return None
    workers = model_workers(model)
    return per_engine if workers is None else per_engine * len(workers)


class Admission:
    """Every model's gate; `guard` is the model manager's hook for each model it adds."""

    def __init__(self, options: AdmissionOptions, registry: CollectorRegistry, prefix: str):
        self.options = options
        self.metrics = AdmissionMetrics(registry, prefix)
        self.gates: dict[str, ModelGate] = {}
        self._models: dict[str, Any] = {}

    def guard(self, model: Any) -> None:
        """Put `model`'s engine behind its gate (a model that comes back keeps its gate)."""
        engine = getattr(model, "engine", None)
        if engine is None or isinstance(engine, AdmittedEngine):
            return
        self._models[model.name] = model
        gate = self.gates.get(model.name)
        if gate is None:
            gate = ModelGate(
                model.name,
                self.options,
                lambda name=model.name: served_capacity(self._models[name]),
                self.metrics,
            )
            self.gates[model.name] = gate
        model.engine = AdmittedEngine(engine, gate, self.options.request_timeout)
