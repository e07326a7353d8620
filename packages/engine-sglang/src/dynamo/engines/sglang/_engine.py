"""`SGLangEngine`: a Backend engine over one `sglang.Engine`, as upstream Dynamo's SGLang worker.

- Our preprocessor's token ids go in as `input_ids`, `async_generate(..., stream=True)` streams
  the new ids back (`incremental_streaming_output`); SGLang batches concurrent requests itself.
- Cancellation: when the request's context is stopped (client gone, a stop string matched by our
  decoder, `stop_generating()`), `tokenizer_manager.abort_request(rid)` aborts it in SGLang, and
  the stream ends with `cancelled`. The abort is repeated until SGLang has the request: a stop
  that comes before SGLang registered the rid would otherwise be dropped.
- A distributed worker (`in=dyn://`) relays SGLang's KV events and load to routers
  (`_publishers`).
- SGLang is imported inside `start`, so this module and the entry point load without it.
- `sglang.Engine(...)` is built on the event loop's thread (it installs signal handlers and keeps
  asyncio state of that loop); the model load blocks the loop meanwhile, before any serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any, Self

from dynamo.engines.sglang._args import ServerPlan, plan_server_args
from dynamo.engines.sglang._output import DeltaMapper
from dynamo.engines.sglang._publishers import Publishers
from dynamo.engines.sglang._sampling import (
    FEATURES,
    SUPPORTED_FIELDS,
    features_for,
    generate_kwargs,
    sampling_params,
)
from dynamo.llm import Context, Engine, EngineConfig, EngineError, ModelType
from dynamo.llm.engine import ENGINE_FLAGS, import_library
from dynamo.llm.errors import EngineFailedError, InvalidRequestError, first_line
from dynamo.llm.generation_options import GenerationOptions

log = logging.getLogger(__name__)

#: How often an abort is repeated until SGLang knows the request.
_ABORT_RETRY_S = 0.05


def server_arg_names() -> frozenset[str]:
    """The fields of SGLang's `ServerArgs` (a msgspec Struct), private ones left out."""
    import msgspec

    from sglang.srt.server_args import ServerArgs

    return frozenset(f.name for f in msgspec.structs.fields(ServerArgs) if f.name[0] != "_")


def free_port_range(count: int) -> int:
    """A TCP port p such that p .. p+count-1 are free now (SGLang's DP ranks publish on p+r)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            for port in range(base + 1, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise EngineError(f"no {count} consecutive free TCP ports for SGLang's KV events")


class SGLangEngine(Engine):
    """One `sglang.Engine`; see the module docstring."""

    model_type = ModelType.Backend
    requires_model = True
    accepted_flags = ENGINE_FLAGS  # every parallelism flag: multi-node as SGLang does it
    features = FEATURES
    library = "sglang"

    def __init__(self, engine: Any, plan: ServerPlan) -> None:
        self._engine = engine
        self.plan = plan
        self.deterministic = bool(plan.kwargs.get("enable_deterministic_inference"))
        self.features = features_for(self.deterministic)
        self.publishers: Publishers | None = None
        self._ids = itertools.count()
        self._closed = False

    @classmethod
    async def start(cls, config: EngineConfig) -> Self:
        sglang = import_library("sglang", cls)
        kv_port = free_port_range(_dp_size(config)) if config.endpoint is not None else None
        plan = plan_server_args(config, server_arg_names(), kv_port)
        if config.card is not None:
            # Routers read the block size from the card: the one KV events are hashed with.
            config.card.kv_cache_block_size = plan.page_size
        log.info("starting SGLang on %s", plan.kwargs["model_path"])
        try:
            engine = sglang.Engine(**plan.kwargs)
        except (ValueError, TypeError, RuntimeError, OSError) as e:
            raise EngineError(f"SGLang could not start: {first_line(e)}") from None
        self = cls(engine, plan)
        if config.endpoint is not None:
            self.publishers = Publishers()
            if plan.kv_events_endpoint is not None:
                await self.publishers.start_kv_relays(
                    config.endpoint,
                    plan.kv_events_endpoint,
                    plan.kv_events_topic,
                    plan.page_size,
                    plan.dp_size,
                )
                await self.publishers.start_load(
                    config.endpoint, engine.port_args.metrics_ipc_name, plan.page_size
                )
        return self

    # -- serving ------------------------------------------------------------------------------------

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        if self._closed:
            raise EngineFailedError("the SGLang engine is shut down")
        opts = GenerationOptions.from_request(request, SUPPORTED_FIELDS)
        params = sampling_params(opts, deterministic=self.deterministic)
        visible = (request.get("stop_conditions") or {}).get("stop_token_ids") or ()
        mapper = DeltaMapper(visible, opts.logprobs)
        if context.is_stopped():
            if not context.is_killed():
                yield {"token_ids": [], "finish_reason": "cancelled"}
            return
        rid = f"{context.id()}-{next(self._ids)}"
        try:
            stream = await self._engine.async_generate(
                input_ids=opts.prompt,
                sampling_params=params,
                stream=True,
                rid=rid,
                **generate_kwargs(opts),
            )
        except ValueError as e:
            raise InvalidRequestError(first_line(e)) from None
        watcher = asyncio.ensure_future(self._abort_when_stopped(context, rid))
        try:
            async with contextlib.aclosing(stream):
                async for item in _rejections_as_ours(stream):
                    delta = mapper.delta(item, context.is_stopped())
                    if mapper.finished and context.is_killed():
                        return
                    if delta is not None:
                        yield delta
                    if mapper.finished:
                        return
        finally:
            watcher.cancel()
            if not mapper.finished:
                # The consumer left (or SGLang failed) before the end: free SGLang's slot.
                self._engine.tokenizer_manager.abort_request(rid=rid)

    async def _abort_when_stopped(self, context: Context, rid: str) -> None:
        await context.stopped()
        manager = self._engine.tokenizer_manager
        while True:
            # A no-op until SGLang registered the rid, and after the first abort that went out.
            manager.abort_request(rid=rid)
            await asyncio.sleep(_ABORT_RETRY_S)

    # -- shutdown ----------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.publishers is not None:
            await self.publishers.close()
        self._engine.shutdown()


async def _rejections_as_ours(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """SGLang rejects a bad request with ValueError (its HTTP server's 400) on the first pull."""
    try:
        async for item in stream:
            yield item
    except ValueError as e:
        raise InvalidRequestError(first_line(e)) from None


def _dp_size(config: EngineConfig) -> int:
    return int((config.extra_engine_args or {}).get("dp_size") or 1)


__all__ = ["SGLangEngine", "free_port_range", "server_arg_names"]
