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
import dataclasses
import itertools
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Self

from dynamo.engines.vllm._args import (
    engine_kwargs,
    flag_kwargs,
    follower_command,
    set_visible_devices,
)
from dynamo.engines.vllm._metrics import LoadReporter, stat_logger_factory
from dynamo.engines.vllm._options import (
    FEATURES,
    finish_reason,
    logprob_fields,
    prompt_logprob_field,
    sampling_kwargs,
    usage,
)
from dynamo.llm import Context, Engine, EngineConfig, EngineError, ModelType
from dynamo.llm.engine import EngineRuntime
from dynamo.llm.errors import EngineFailedError, InvalidRequestError, ServiceUnavailableError

if TYPE_CHECKING:
    from dynamo.llm.kv.engine_publishers import EnginePublishers

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "out=vllm needs vLLM: `pip install vllm` on a GPU machine, or the CPU build "
    "(see the dynamo-engine-vllm README)"
)
# EngineConfig's own defaults: a flag at its default was not given on the command line.
_DEFAULT_CONFIG = EngineConfig(model_name="")


def import_vllm() -> Any:
    """The `vllm` module, or the one-line error that says how to install it."""
    # vLLM logs its Triton probing at import; on a CPU that is noise before any error line.
    logging.getLogger("vllm.triton_utils.importing").setLevel(logging.ERROR)
    try:
        import vllm
    except ImportError as e:
        raise EngineError(f"{INSTALL_HINT} ({e})") from None
    return vllm


def can_load_gguf() -> bool:
    """Whether the installed vLLM reads GGUF files: its in-tree loader (vLLM <= 0.2x) or the
    `vllm-gguf-plugin` it moved to."""
    import importlib.util

    return any(
        importlib.util.find_spec(name) is not None
        for name in ("vllm.model_executor.model_loader.gguf_loader", "vllm_gguf_plugin")
    )


def set_flags(config: EngineConfig) -> list[str]:
    """The EngineConfig fields the user changed from their defaults (the flags given)."""
    names = ("context_length", "kv_cache_block_size", "tensor_parallel_size", "num_nodes",
             "node_rank", "leader_addr", "model_config")  # fmt: skip
    return [n for n in names if getattr(config, n) != getattr(_DEFAULT_CONFIG, n)]


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
        self._llm = llm
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
        vllm = import_vllm()
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        model = config.model_path or config.model_name
        if model.endswith(".gguf") and not can_load_gguf():
            raise EngineError(
                f"vLLM {vllm.__version__} cannot load GGUF files (its GGUF loader moved to the "
                "vllm-gguf-plugin package): pass an HF folder or repo id, or use out=llamacpp"
            )
        given = set_flags(config)
        flags = flag_kwargs(
            context_length=config.context_length,
            # Unset (None): vLLM's own default (16 on GPUs; 128 on CPUs, which need a multiple of
            # 32) applies; the card then carries the size vLLM chose.
            kv_cache_block_size=config.kv_cache_block_size,
            tensor_parallel_size=config.tensor_parallel_size,
            num_nodes=config.num_nodes,
            node_rank=config.node_rank,
            leader_addr=config.leader_addr,
            model_config=config.model_config,
        )
        fields = [f.name for f in dataclasses.fields(AsyncEngineArgs)]
        kwargs = engine_kwargs(model, flags, given, config.extra_engine_args, fields)
        if config.node_rank > 0:
            raise EngineError(
                f"--node-rank {config.node_rank}: dynamo-run runs the leader (rank 0) only; "
                f"start this node's vLLM workers with `{follower_command(model, kwargs)}`"
            )
        set_visible_devices(
            config.base_gpu_id,
            config.tensor_parallel_size * int(kwargs.get("pipeline_parallel_size") or 1),
        )
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        # vLLM's engine core runs in a spawned process; spawn is what vLLM forces on CPU anyway.
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        kv_endpoint = None
        if config.distributed and kwargs.get("enable_prefix_caching"):
            from vllm.config import KVEventsConfig

            kv_endpoint = kv_events_endpoint()
            kwargs["kv_events_config"] = KVEventsConfig(
                enable_kv_cache_events=True, publisher="zmq", endpoint=kv_endpoint
            )
        try:
            engine_args = AsyncEngineArgs(**kwargs)
            vllm_config = await asyncio.to_thread(
                engine_args.create_engine_config, UsageContext.OPENAI_API_SERVER
            )
        except (TypeError, ValueError) as e:
            raise EngineError(f"vLLM refused the engine arguments: {_one_line(e)}") from None

        reporters: dict[int, LoadReporter] = {}

        def make_reporter(vc: Any) -> LoadReporter:
            # Its sink is the worker's load publisher, once one is attached.
            return LoadReporter(
                None, vc.cache_config.num_gpu_blocks or 0, vc.scheduler_config.max_num_seqs
            )

        log.info("starting vLLM %s on %s", vllm.__version__, model)
        try:
            llm = await asyncio.to_thread(
                AsyncLLM.from_vllm_config,
                vllm_config,
                usage_context=UsageContext.OPENAI_API_SERVER,
                stat_loggers=[stat_logger_factory(reporters, make_reporter)],
                disable_log_stats=False,
            )
        except Exception as e:
            raise EngineError(f"vLLM could not start: {_one_line(e)}") from None
        max_model_len = vllm_config.model_config.max_model_len
        engine = cls(llm, vllm, max_model_len)
        engine.reporters = reporters
        engine.kv_endpoint = kv_endpoint
        blocks = vllm_config.cache_config.num_gpu_blocks or 0
        for reporter in reporters.values():
            reporter.num_gpu_blocks = max(1, blocks)
        engine.block_size = vllm_config.cache_config.block_size
        log.info(
            "vLLM ready: max_model_len %d, %d KV blocks of %d tokens",
            max_model_len,
            blocks,
            engine.block_size,
        )
        return engine

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
            raise InvalidRequestError(_one_line(e)) from None
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
        """vLLM's outputs, its errors as ours: a request vLLM rejects is the client's fault (400),
        a full queue a 503, anything else the engine's (502)."""
        from vllm.exceptions import GracefulHTTPError, VLLMClientError
        from vllm.v1.engine.exceptions import EngineDeadError

        try:
            async for out in stream:
                yield out
        except VLLMClientError as e:
            raise InvalidRequestError(_one_line(e)) from None
        except GracefulHTTPError as e:
            raise ServiceUnavailableError(f"vLLM: {_one_line(e)}") from None
        except EngineDeadError as e:
            raise EngineFailedError(f"the vLLM engine died: {_one_line(e)}") from None
        except Exception as e:  # EngineGenerateError wraps the cause
            raise EngineFailedError(f"vLLM failed: {_one_line(e.__cause__ or e)}") from None

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


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 400 else text[:397] + "..."


__all__ = ["INSTALL_HINT", "VllmEngine", "can_load_gguf", "import_vllm", "set_flags"]
