"""`out=mocker`: a Backend engine that simulates vLLM's KV cache and timing, with no model.

It takes `PreprocessedRequest` dicts (token ids in) and streams random token ids out, one per
simulated step, finishing with `length` at `stop_conditions.max_tokens`. What it is for is its
side effects: the KV events it publishes and the load it reports are those of a real paged-KV
engine, so KV-aware routing can be developed and benchmarked without GPUs.

Output tokens are drawn from the prompt's own token ids minus the request's EOS ids: always
valid ids for the model's tokenizer, and never an early end of stream. With
`output_options.logprobs` set, each token comes with made-up but well-formed log probabilities
(`_logprobs`), so the frontend's logprobs path can be exercised without a model.

KV events: pass a `KvEventPublisher`-like object as `MockerEngine.start(config,
kv_publisher=...)`; without one, when `config.endpoint` is a `dynamo.runtime` endpoint, a
`KvEventPublisher` on its component's NATS connection is made, with the endpoint's instance id as
the worker id. Neither: no events.

Load metrics (`metrics()`, upstream's `ForwardPassMetrics`) go the same way: to
`start(config, metrics_publisher=...)` (anything with `publish(metrics)`), else, for a
distributed worker, to a `WorkerMetricsPublisher` on the endpoint's component, which the engine
closes with itself. They are handed over once per scheduler step; the publisher coalesces them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from typing import Any, Protocol, Self

from dynamo.engines.mocker._kv_cache import KvCache, KvEventSink
from dynamo.engines.mocker._logprobs import made_up_logprobs
from dynamo.engines.mocker._options import MockerOptions
from dynamo.engines.mocker._scheduler import MockScheduler, Sequence_
from dynamo.llm import Context, Engine, EngineConfig, ModelType
from dynamo.llm.errors import ContextLengthExceededError, InvalidRequestError
from dynamo.llm.features import Feature

log = logging.getLogger(__name__)

#: Output length when the request names no `max_tokens`.
DEFAULT_MAX_TOKENS = 256


class MetricsSink(Protocol):
    """What the mocker needs of a metrics publisher: `dynamo.llm.WorkerMetricsPublisher` is one."""

    def publish(self, metrics: Any) -> None: ...


class MockerEngine(Engine):
    """The simulated engine; one background task runs its scheduler loop."""

    model_type = ModelType.Backend
    requires_model = True
    accepted_flags = frozenset(
        {"context_length", "kv_cache_block_size", "extra_engine_args", "model_config"}
    )
    #: Its tokens are random, not sampled; its log probabilities are made up (well-formed).
    features = frozenset({Feature.UNSAMPLED, Feature.LOGPROBS})

    def __init__(
        self,
        opts: MockerOptions,
        kv_publisher: KvEventSink | None = None,
        metrics_publisher: MetricsSink | None = None,
    ) -> None:
        self.opts = opts
        self.block_size = opts.block_size
        self.kv = KvCache(opts.num_gpu_blocks, opts.block_size, kv_publisher)
        self.scheduler = MockScheduler(opts, self.kv, random.Random(opts.seed))
        self.metrics_publisher = metrics_publisher
        self._owned_publisher: Any = None  # made by `start`: closed with the engine
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._report()

    @classmethod
    async def start(
        cls,
        config: EngineConfig,
        kv_publisher: KvEventSink | None = None,
        metrics_publisher: MetricsSink | None = None,
    ) -> Self:
        opts = MockerOptions.from_config(config)
        owned = None
        if config.endpoint is not None:
            if kv_publisher is None:
                kv_publisher = _publisher_for_endpoint(config.endpoint, opts.block_size)
            if metrics_publisher is None:
                metrics_publisher = owned = await _metrics_publisher_for_endpoint(config.endpoint)
        if config.card is not None and hasattr(config.card, "kv_cache_block_size"):
            # Routers read the block size from the card: it must be the one we hash with.
            config.card.kv_cache_block_size = opts.block_size
        engine = cls(opts, kv_publisher, metrics_publisher)
        engine._owned_publisher = owned
        return engine

    # -- serving ---------------------------------------------------------------------------------

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        if self._closed:
            raise InvalidRequestError("the mocker engine is shut down")
        prompt = list(request.get("token_ids") or ())
        if not prompt:
            raise InvalidRequestError("the mocker needs a non-empty token_ids prompt")
        if not self.scheduler.fits_ever(len(prompt)):
            raise ContextLengthExceededError(
                f"prompt of {len(prompt)} tokens does not fit in the mocker's KV cache "
                f"({self.opts.num_gpu_blocks} blocks of {self.block_size})"
            )
        max_tokens = (request.get("stop_conditions") or {}).get("max_tokens")
        max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else int(max_tokens)
        if max_tokens <= 0:
            yield {"token_ids": [], "finish_reason": "length"}
            return
        eos = set(request.get("eos_token_ids") or ())
        vocab = [t for t in dict.fromkeys(prompt) if t not in eos] or [t for t in prompt]
        top = (request.get("output_options") or {}).get("logprobs")
        rng = random.Random(hash((context.id(), len(prompt))))
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        seq = Sequence_(context.id(), prompt, max_tokens, queue.put_nowait, vocab)
        self.scheduler.add(seq)
        self._ensure_loop()
        stop_wait = asyncio.ensure_future(context.stopped())
        usage_sent = False
        try:
            while True:
                if queue.empty():
                    get = asyncio.ensure_future(queue.get())
                    await asyncio.wait({get, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                    if not get.done():
                        get.cancel()
                        break
                    token = get.result()
                else:
                    token = queue.get_nowait()
                if token is None:
                    if seq.cancelled:
                        break
                    yield {"token_ids": [], "finish_reason": "length"}
                    return
                delta: dict[str, Any] = {"token_ids": [token]}
                if top is not None:
                    logprob, candidates = made_up_logprobs(token, vocab, int(top), rng)
                    delta["log_probs"] = [logprob]
                    delta["top_logprobs"] = [candidates]
                if not usage_sent:
                    # Prefix-cache hits are known from admission: sent with the first token, so
                    # a frontend that stops at max_tokens before the last message still has it.
                    delta["completion_usage"] = _usage(len(prompt), seq)
                    usage_sent = True
                yield delta
            if not context.is_killed():
                yield {"token_ids": [], "finish_reason": "cancelled"}
        finally:
            stop_wait.cancel()
            if seq.generated < seq.max_tokens or not queue.empty():
                seq.cancelled = True
                self._wake.set()

    def _ensure_loop(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="mocker-loop")
        self._wake.set()

    async def _run(self) -> None:
        sched = self.scheduler
        opts = self.opts
        while not self._closed:
            sched.drop_cancelled()
            self.kv.flush_events()
            self._report()
            if not sched.has_work():
                self._wake.clear()
                await self._wake.wait()
                continue
            step = sched.schedule()
            if not step.prefill and not step.decode:
                # Everything is blocked on KV space that only a finishing request frees.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.05)
                continue
            delay = sched.step_ms(step) / opts.speedup_ratio / 1000.0 if opts.sleeps else 0.0
            await asyncio.sleep(delay)
            sched.complete(step)

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        for seq in [*self.scheduler.running, *self.scheduler.waiting]:
            seq.cancelled = True
            self.scheduler.finish(seq)
        self.kv.flush_events()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.metrics_publisher = None
        if self._owned_publisher is not None:
            await self._owned_publisher.close()
            self._owned_publisher = None

    # -- load metrics ----------------------------------------------------------------------------

    def _report(self) -> None:
        if self.metrics_publisher is not None:
            self.metrics_publisher.publish(self.metrics())

    def metrics(self) -> dict[str, Any]:
        """Upstream's `ForwardPassMetrics` shape (`worker_stats`, `kv_stats`)."""
        sched, kv = self.scheduler, self.kv
        stats = sched.stats
        return {
            "worker_stats": {
                "data_parallel_rank": 0,
                "request_active_slots": len(sched.running),
                "request_total_slots": self.opts.max_num_seqs,
                "num_requests_waiting": len(sched.waiting),
            },
            "kv_stats": {
                "kv_active_blocks": kv.active_blocks,
                "kv_total_blocks": kv.num_blocks,
                "gpu_cache_usage_perc": kv.active_blocks / kv.num_blocks,
                "gpu_prefix_cache_hit_rate": (
                    stats.cached_tokens / stats.prompt_tokens if stats.prompt_tokens else 0.0
                ),
            },
            "spec_decode_stats": None,
        }


def _usage(prompt_tokens: int, seq: Sequence_) -> dict[str, Any]:
    """Upstream's `completion_usage` with the prefix-cache hits of `seq`."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": seq.generated,
        "total_tokens": prompt_tokens + seq.generated,
        "prompt_tokens_details": {"cached_tokens": seq.cached_tokens},
    }


def _publisher_for_endpoint(endpoint: Any, block_size: int) -> KvEventSink | None:
    component = getattr(endpoint, "component", None)
    lease_id = getattr(endpoint, "lease_id", None)
    if component is None or lease_id is None:
        log.warning("mocker: config.endpoint has no component; KV events are off")
        return None
    from dynamo.llm.kv.publisher import KvEventPublisher

    return KvEventPublisher.for_component(component, lease_id(), block_size)


async def _metrics_publisher_for_endpoint(endpoint: Any) -> Any:
    component = getattr(endpoint, "component", None)
    if component is None or not hasattr(component, "runtime"):
        log.warning("mocker: config.endpoint has no component; load metrics are off")
        return None
    from dynamo.llm.kv.metrics_publisher import WorkerMetricsPublisher

    publisher = WorkerMetricsPublisher()
    await publisher.create_endpoint(component)
    return publisher


__all__ = ["DEFAULT_MAX_TOKENS", "MetricsSink", "MockerEngine"]
