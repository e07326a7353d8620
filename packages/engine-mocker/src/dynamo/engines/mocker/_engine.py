"""`out=mocker`: a Backend engine that simulates vLLM's KV cache and timing, with no model.

It takes `PreprocessedRequest` dicts (token ids in) and streams random token ids out, one per
simulated step, finishing with `length` at `stop_conditions.max_tokens`. What it is for is its
side effects: the KV events it publishes and the load it reports are those of a real paged-KV
engine, so KV-aware routing can be developed and benchmarked without GPUs.

Output tokens are drawn from the prompt's own token ids minus the request's EOS ids: always
valid ids for the model's tokenizer, and never an early end of stream. With
`output_options.logprobs` set, each token comes with made-up but well-formed log probabilities
(`_logprobs`), so the frontend's logprobs path can be exercised without a model.

KV events and load metrics go to the publishers a worker attaches (`Engine.attach`,
`dynamo.llm.kv.engine_publishers`): `runtime()` asks for one KV event stream, hashed with the
mocker's block size, and load metrics. The engine builds no publisher itself; in process none is
attached and nothing is published. Load metrics (`metrics()`, upstream's `ForwardPassMetrics`)
are handed over once per scheduler step (the publisher coalesces them), and once at `attach`.

The block size is the mocker's own choice (`_options`); the card says it because `runtime()`
declares it, and whoever built the card applies that (`EngineRuntime.apply_to`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Self

from dynamo.engines.mocker._kv_cache import KvCache
from dynamo.engines.mocker._logprobs import made_up_logprobs
from dynamo.engines.mocker._options import MockerOptions
from dynamo.engines.mocker._scheduler import MockScheduler, Sequence_
from dynamo.llm import Context, Engine, EngineConfig, ModelType
from dynamo.llm.engine import EngineRuntime
from dynamo.llm.errors import ContextLengthExceededError, InvalidRequestError
from dynamo.llm.features import Feature
from dynamo.llm.generation_options import GenerationOptions
from dynamo.llm.kv.engine_publishers import EnginePublishers, MetricsSink

#: Output length when the request names no `max_tokens`.
DEFAULT_MAX_TOKENS = 256
#: The optional request fields the mocker takes (`GenerationOptions.from_request`): made-up log
#: probabilities, and logit_bias, a sampling knob with no effect on an engine that does not
#: sample (`Feature.UNSAMPLED`). Guided decoding, prompt log probabilities, ... are refused.
SUPPORTED_FIELDS = frozenset({"logprobs", "logit_bias"})


class MockerEngine(Engine):
    """The simulated engine; one background task runs its scheduler loop."""

    model_type = ModelType.Backend
    requires_model = True
    accepted_flags = frozenset(
        {"context_length", "kv_cache_block_size", "extra_engine_args", "model_config"}
    )
    #: Its tokens are random, not sampled; its log probabilities are made up (well-formed).
    features = frozenset({Feature.UNSAMPLED, Feature.LOGPROBS})

    def __init__(self, opts: MockerOptions) -> None:
        self.opts = opts
        self.block_size = opts.block_size
        self.kv = KvCache(opts.num_gpu_blocks, opts.block_size)
        self.scheduler = MockScheduler(opts, self.kv, random.Random(opts.seed))
        self.metrics_publisher: MetricsSink | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def start(cls, config: EngineConfig) -> Self:
        return cls(MockerOptions.from_config(config))

    def runtime(self) -> EngineRuntime:
        """The block size routers must hash with (it is the mocker's own choice), one KV event
        stream and load metrics."""
        return EngineRuntime(kv_cache_block_size=self.block_size, kv_events=True, load_metrics=True)

    async def attach(self, publishers: EnginePublishers) -> None:
        self.kv.sink = publishers.kv_events_of_rank(0)
        self.metrics_publisher = publishers.metrics
        self._report()  # the idle state, before any request

    # -- serving ---------------------------------------------------------------------------------

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        if self._closed:
            raise InvalidRequestError("the mocker engine is shut down")
        opts = GenerationOptions.from_request(request, SUPPORTED_FIELDS)
        prompt = opts.prompt
        if not self.scheduler.fits_ever(len(prompt)):
            raise ContextLengthExceededError(
                f"prompt of {len(prompt)} tokens does not fit in the mocker's KV cache "
                f"({self.opts.num_gpu_blocks} blocks of {self.block_size})"
            )
        max_tokens = DEFAULT_MAX_TOKENS if opts.max_tokens is None else opts.max_tokens
        if max_tokens == 0:
            yield {"token_ids": [], "finish_reason": "length"}
            return
        eos = set(opts.eos_token_ids)
        vocab = [t for t in dict.fromkeys(prompt) if t not in eos] or [t for t in prompt]
        top = opts.logprobs
        rng = random.Random(hash((context.id(), len(prompt))))
        stream = _TokenStream()
        pending = stream.pending
        seq = Sequence_(context.id(), prompt, max_tokens, stream.emit, vocab)
        self.scheduler.add(seq)
        self._ensure_loop()
        stop_wait = asyncio.ensure_future(context.stopped())
        stop_wait.add_done_callback(stream.wake)
        usage_sent = False
        try:
            while True:
                if not pending:
                    if stop_wait.done():
                        break
                    await stream.wait()
                    if not pending:
                        break  # stopped
                # Every token made since the consumer last read goes out in one delta, as
                # vLLM's output collector merges outputs a slow consumer has not taken yet; a
                # consumer that keeps up gets one token per step.
                tokens: list[int] = []
                while pending and pending[0] is not None:
                    tokens.append(pending.popleft())  # type: ignore[arg-type]
                if not tokens:
                    pending.popleft()  # None: the scheduler is done with it
                    if seq.cancelled:
                        break
                    yield {"token_ids": [], "finish_reason": "length"}
                    return
                delta: dict[str, Any] = {"token_ids": tokens}
                if top is not None:
                    made = [made_up_logprobs(t, vocab, int(top), rng) for t in tokens]
                    delta["log_probs"] = [logprob for logprob, _ in made]
                    delta["top_logprobs"] = [candidates for _, candidates in made]
                if not usage_sent:
                    # Prefix-cache hits are known from admission: sent with the first token, so
                    # a frontend that stops at max_tokens before the last message still has it.
                    delta["completion_usage"] = _usage(seq.prompt_len, seq)
                    usage_sent = True
                yield delta
            if not context.is_killed():
                yield {"token_ids": [], "finish_reason": "cancelled"}
        finally:
            stop_wait.cancel()
            if seq.generated < seq.max_tokens or pending:
                seq.cancelled = True
                self._wake.set()

    def _ensure_loop(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="mocker-loop")
        self._wake.set()

    async def _run(self) -> None:
        sched = self.scheduler
        opts = self.opts
        loop = asyncio.get_running_loop()
        deadline: float | None = None  # when the step just completed was due to end
        while not self._closed:
            start = step_start(loop.time(), deadline)
            deadline = None
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
            if opts.sleeps:
                deadline = start + sched.step_ms(step) / opts.speedup_ratio / 1000.0
                await asyncio.sleep(max(deadline - loop.time(), 0.0))
            else:
                await asyncio.sleep(0)
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
        # The publishers are the worker's: it closes them after this.
        self.kv.sink = None
        self.metrics_publisher = None

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


#: How late a step may start and still be timed from when the step before it was due to end.
MAX_CATCH_UP_S = 0.05


def step_start(now: float, previous_deadline: float | None) -> float:
    """When the step about to be planned starts, for timing it: the end the step before it was
    due (steps run back to back), or `now` after an idle wait or a stall over `MAX_CATCH_UP_S`.

    Upstream's pass ends at its start plus its modeled time (a precise timer; what it does
    between passes costs microseconds in Rust), so its steps keep the modeled pace. Ours would
    lose ground every step: asyncio's sleep wakes up to 1 ms late (epoll's timeout is in whole
    ms, rounded up) and handing the step's tokens out costs Python time; timing each step from
    the previous one's due end takes that lateness out of the next step's sleep. A longer stall
    (the host descheduled us) is not caught up in a burst of unslept steps."""
    if previous_deadline is not None and now - previous_deadline <= MAX_CATCH_UP_S:
        return previous_deadline
    return now


class _TokenStream:
    """The tokens the scheduler made for one request and not yet read, and the one waiter.

    The scheduler's `emit` appends and wakes the reader through a bare future: no task or
    `asyncio.wait` per token (an `asyncio.Queue` read beside the stop signal cost both)."""

    __slots__ = ("_waiter", "pending")

    def __init__(self) -> None:
        self.pending: deque[int | None] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def emit(self, token: int | None) -> None:
        self.pending.append(token)
        self.wake()

    def wake(self, _: object = None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until a token comes or `wake` is called (the request was stopped)."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


def _usage(prompt_tokens: int, seq: Sequence_) -> dict[str, Any]:
    """Upstream's `completion_usage` with the prefix-cache hits of `seq`."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": seq.generated,
        "total_tokens": prompt_tokens + seq.generated,
        "prompt_tokens_details": {"cached_tokens": seq.cached_tokens},
    }


__all__ = ["DEFAULT_MAX_TOKENS", "MockerEngine"]
