"""`VllmEngine`: a Backend engine on vLLM's `AsyncLLM`, token ids in, token ids out.

As upstream Dynamo's vLLM worker: our preprocessor's token ids go in as a `TokensPrompt`, vLLM
streams `RequestOutput`s with `output_kind=DELTA` (only the new token ids; several when the reader
lags), and our frontend detokenizes and applies stop strings. vLLM runs without a detokenizer.

- Cancellation: `context.stop_generating()` (a stop string matched, the client went away) aborts
  the vLLM request (`AsyncLLM.abort`), which frees its KV blocks at vLLM's next step; so does
  closing the stream early (vLLM aborts a `generate` whose generator is closed).
- `runtime()` declares what vLLM actually runs, for the model card: its context length is
  vLLM's effective `max_model_len`, its KV block size vLLM's `block_size`.
- A distributed worker (`config.distributed`) attaches its publishers (`Engine.attach`); vLLM's
  own KV cache events (its ZMQ publisher, on an IPC socket of its own) are relayed to them in
  our format, and vLLM's scheduler statistics go to them as load metrics, so `--router-mode kv`
  routes between vLLM workers.
- vLLM is imported inside `start`, so this module (and the package's entry point) loads without
  it; `dynamo-run out=vllm` without vLLM is one line saying what to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Self

from dynamo.engines.vllm._errors import our_error
from dynamo.engines.vllm._metrics import LoadReporter, stat_logger_factory
from dynamo.engines.vllm._options import (
    FEATURES,
    finish_reason,
    logprob_fields,
    prompt_logprob_field,
    sampling_kwargs,
    usage,
)
from dynamo.engines.vllm._setup import (
    INSTALL_HINT,
    can_load_gguf,
    engine_arguments,
    import_vllm,
    import_vllm_off_loop,
    one_line,
    set_flags,
)
from dynamo.engines.vllm._setup import vllm_config as create_vllm_config
from dynamo.llm import Context, Engine, EngineConfig, EngineError, ModelType
from dynamo.llm.engine import EngineRuntime
from dynamo.llm.errors import EngineFailedError, InvalidRequestError

if TYPE_CHECKING:
    from dynamo.llm.kv.engine_publishers import EnginePublishers

log = logging.getLogger(__name__)


def kv_events_endpoint() -> str:
    """Where vLLM publishes this worker's KV events: an IPC socket of its own (vLLM binds
    `ipc://` endpoints). A free TCP port picked here could be taken by one of the sockets vLLM
    opens on random ports while it starts (seen under load: "Address already in use")."""
    return f"ipc://{tempfile.gettempdir()}/dynamo-vllm-kv-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class VllmEngine(Engine):
    """One `AsyncLLM`; vLLM batches concurrent requests itself."""

    model_type = ModelType.Backend
    requires_model = True
    accepted_flags = frozenset(
        {
            "context_length",
            "kv_cache_block_size",
            "tensor_parallel_size",
            "base_gpu_id",
            "num_nodes",
            "node_rank",
            "leader_addr",
            "extra_engine_args",
            "model_config",
        }
    )
    library = "vllm"
    features = FEATURES

    def __init__(self, llm: Any, vllm: Any, max_model_len: int) -> None:
        self._llm: Any = llm  # None once closed
        self._vllm = vllm
        self.max_model_len = max_model_len
        self._ids = itertools.count()
        self.reporters: dict[int, LoadReporter] = {}
        self.block_size = 0
        #: Where vLLM publishes KV events (a worker's engine with prefix caching), else None.
        self.kv_endpoint: str | None = None
        self._relay: Any = None
        self._closed = False

    # -- start-up ---------------------------------------------------------------------------------

    @classmethod
    async def start(cls, config: EngineConfig) -> Self:
        vllm = await import_vllm_off_loop()
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        # `--kv-cache-block-size` unset (None): vLLM's own default (16 on GPUs; 128 on CPUs,
        # which need a multiple of 32) applies; the card then carries the size vLLM chose.
        model, kwargs = engine_arguments(config, vllm)
        kv_endpoint = None
        if config.distributed and kwargs.get("enable_prefix_caching"):
            from vllm.config import KVEventsConfig

            kv_endpoint = kv_events_endpoint()
            kwargs["kv_events_config"] = KVEventsConfig(
                enable_kv_cache_events=True, publisher="zmq", endpoint=kv_endpoint
            )
        vllm_config = await create_vllm_config(kwargs)

        reporters: dict[int, LoadReporter] = {}

        def make_reporter(vc: Any) -> LoadReporter:
            # Its sink is the worker's load publisher, once one is attached.
            return LoadReporter(
                None, vc.cache_config.num_gpu_blocks or 0, vc.scheduler_config.max_num_seqs
            )

        # The engine owns the AsyncLLM from the moment it exists (no local name for it: this
        # frame can outlive `start`, and an AsyncLLM it held would outlive `close`, whose
        # __del__ then shuts down again at interpreter exit and fails on torn-down globals), so
        # that whatever fails from there on closes it (else its engine core process lives on).
        engine = cls(None, vllm, vllm_config.model_config.max_model_len)
        engine.reporters = reporters
        engine.kv_endpoint = kv_endpoint
        log.info("starting vLLM %s on %s", vllm.__version__, model)
        try:
            try:
                await engine._build(
                    AsyncLLM.from_vllm_config,
                    vllm_config,
                    usage_context=UsageContext.OPENAI_API_SERVER,
                    stat_loggers=[stat_logger_factory(reporters, make_reporter)],
                    disable_log_stats=False,
                )
            except Exception as e:
                raise EngineError(f"vLLM could not start: {one_line(e)}") from None
            blocks = vllm_config.cache_config.num_gpu_blocks or 0
            for reporter in reporters.values():
                reporter.num_gpu_blocks = max(1, blocks)
            engine.block_size = vllm_config.cache_config.block_size
        except BaseException:
            await engine.close()
            raise
        log.info(
            "vLLM ready: max_model_len %d, %d KV blocks of %d tokens",
            engine.max_model_len,
            blocks,
            engine.block_size,
        )
        return engine

    async def _build(self, factory: Any, *args: Any, **kwargs: Any) -> None:
        """`self._llm = factory(*args, **kwargs)`, in a thread. Cancelled meanwhile, it waits for
        the thread's AsyncLLM (which is built either way) so that `close` shuts it down."""
        build = asyncio.ensure_future(asyncio.to_thread(factory, *args, **kwargs))
        try:
            self._llm = await asyncio.shield(build)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                self._llm = await build
            raise

    def runtime(self) -> EngineRuntime:
        """vLLM's effective context and block size; KV events when it publishes them (a
        worker's engine with prefix caching), and load metrics."""
        return EngineRuntime(
            context_length=self.max_model_len,
            kv_cache_block_size=self.block_size,
            kv_events=self.kv_endpoint is not None,
            load_metrics=True,
        )

    async def attach(self, publishers: EnginePublishers) -> None:
        for reporter in self.reporters.values():
            reporter.sink = publishers.metrics
            if publishers.metrics is not None and reporter.last is not None:
                # What vLLM reported before (its idle start at least): routers see the worker's
                # size now, not at its first request.
                publishers.metrics.publish(reporter.last)
        kv = publishers.kv_events_of_rank(0)
        if self.kv_endpoint is not None and kv is not None:
            from dynamo.llm.kv.zmq_events import ZmqKvEventRelay, subscriber_endpoint

            self._relay = ZmqKvEventRelay(subscriber_endpoint(self.kv_endpoint), kv)
            self._relay.start()
            await self._relay.ready()

    # -- serving ------------------------------------------------------------------------------------

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        if self._closed:
            raise EngineFailedError("the vLLM engine is shut down")
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        kwargs = sampling_kwargs(request, self.max_model_len)
        try:
            if "structured_outputs" in kwargs:
                kwargs["structured_outputs"] = StructuredOutputsParams(
                    **kwargs["structured_outputs"]
                )
            params = SamplingParams(**kwargs, output_kind=RequestOutputKind.DELTA)
        except (TypeError, ValueError) as e:
            raise InvalidRequestError(one_line(e)) from None
        visible = (request.get("stop_conditions") or {}).get("stop_token_ids") or ()
        top = kwargs.get("logprobs")
        request_id = f"{context.id()}-{next(self._ids)}"
        prompt = _token_prompt(list(request["token_ids"]))
        stream = self._llm.generate(prompt, params, request_id)
        watcher = asyncio.ensure_future(self._abort_when_stopped(context, request_id))
        completion_tokens = 0
        first = True
        try:
            async with contextlib.aclosing(stream):
                async for out in self._outputs(stream):
                    comp = out.outputs[0] if out.outputs else None
                    token_ids = list(comp.token_ids) if comp is not None else []
                    completion_tokens += len(token_ids)
                    reason = (
                        finish_reason(comp.finish_reason, comp.stop_reason, visible)
                        if comp is not None
                        else ("error" if out.finished else None)
                    )
                    delta: dict[str, Any] = {"token_ids": token_ids}
                    if top is not None and comp is not None:
                        delta |= logprob_fields(token_ids, comp.logprobs, top)
                    if first and out.prompt_logprobs is not None:
                        delta["prompt_logprobs"] = prompt_logprob_field(out.prompt_logprobs)
                    first = False
                    if out.finished:
                        if reason == "cancelled" and context.is_killed():
                            return
                        delta["finish_reason"] = reason
                        delta["completion_usage"] = usage(
                            len(request["token_ids"]), completion_tokens, out.num_cached_tokens
                        )
                    elif not token_ids and "prompt_logprobs" not in delta:
                        continue
                    yield delta
        finally:
            watcher.cancel()

    async def _outputs(self, stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """vLLM's outputs, its errors as ours (`our_error`)."""
        try:
            async for out in stream:
                yield out
        except Exception as e:
            raise our_error(e) from None

    async def _abort_when_stopped(self, context: Context, request_id: str) -> None:
        await context.stopped()
        # Shielded: the abort must reach vLLM even when the stream is torn down meanwhile.
        await asyncio.shield(self._llm.abort(request_id))

    # -- introspection and shutdown ---------------------------------------------------------------

    def num_unfinished_requests(self) -> int:
        """Requests vLLM still holds (its own count): 0 once every stream ended or was aborted."""
        return self._llm.output_processor.get_num_unfinished_requests()

    def load(self) -> dict[str, Any] | None:
        """The latest load report (`ForwardPassMetrics` shape) from vLLM's statistics."""
        reporter = self.reporters.get(0)
        return reporter.last if reporter is not None else None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # The publishers are the worker's (it closes them after this): stop feeding them.
        for reporter in self.reporters.values():
            reporter.sink = None
        if self._relay is not None:
            await self._relay.close()
        if self.kv_endpoint is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.kv_endpoint.removeprefix("ipc://"))
        llm, self._llm = self._llm, None
        if llm is None:  # its start failed before vLLM was built
            return
        await asyncio.to_thread(llm.shutdown)
        # Collected now, while the interpreter is whole: vLLM's __del__ shuts down again, and at
        # interpreter exit that fails on torn-down module globals.
        del llm


def _token_prompt(token_ids: list[int]) -> Any:
    """The prompt as vLLM takes token ids: a rendered `TokensInput` where vLLM has them (0.32+,
    where a plain `TokensPrompt` is deprecated and re-rendered), else a `TokensPrompt`."""
    try:
        from vllm.inputs.engine import tokens_input
    except ImportError:
        from vllm import TokensPrompt

        return TokensPrompt(prompt_token_ids=token_ids)
    return tokens_input(token_ids)


__all__ = ["INSTALL_HINT", "VllmEngine", "can_load_gguf", "import_vllm", "set_flags"]
