"""`SGLangEngine`: a Backend engine over one `sglang.Engine`, as upstream Dynamo's SGLang worker.

- Our preprocessor's token ids go in as `input_ids`, `async_generate(..., stream=True)` streams
  the new ids back (`incremental_streaming_output`); SGLang batches concurrent requests itself.
- Cancellation, the stopped and killed cases and shutdown are `LibraryEngine`'s: a stopped
  request is aborted with `tokenizer_manager.abort_request(rid)`, repeated until SGLang has the
  request (a stop that comes before SGLang registered the rid would otherwise be dropped).
- A distributed worker (`in=dyn://`) attaches its publishers; SGLang's KV events and load are
  relayed to them (`_publishers`). `runtime()` declares the page size as the KV block size.
- SGLang is imported inside `start`, so this module and the entry point load without it.
- `sglang.Engine(...)` is built on the event loop's thread (it installs signal handlers and keeps
  asyncio state of that loop); the model load blocks the loop meanwhile, before any serving.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
from collections.abc import AsyncGenerator
from typing import Any, Self

from dynamo.engines.sglang._args import ServerPlan, plan_server_args
from dynamo.engines.sglang._output import DeltaMapper
from dynamo.engines.sglang._publishers import Relays
from dynamo.engines.sglang._sampling import (
    FEATURES,
    SUPPORTED_FIELDS,
    features_for,
    generate_kwargs,
    sampling_params,
)
from dynamo.llm import Context, EngineConfig, EngineError
from dynamo.llm.engine import ENGINE_FLAGS, EngineRuntime, import_library
from dynamo.llm.errors import InvalidRequestError, first_line
from dynamo.llm.generation_options import GenerationOptions
from dynamo.llm.kv.engine_publishers import EnginePublishers
from dynamo.llm.library_engine import LibraryEngine, LibraryRun

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


class SGLangEngine(LibraryEngine):
    """One `sglang.Engine`; see the module docstring."""

    accepted_flags = ENGINE_FLAGS  # every parallelism flag: multi-node as SGLang does it
    features = FEATURES
    library = "sglang"
    library_name = "SGLang"
    supported_fields = SUPPORTED_FIELDS
    # An abort before SGLang registered the rid is dropped: repeat it until one lands.
    abort_retry_s = _ABORT_RETRY_S

    def __init__(self, engine: Any, plan: ServerPlan) -> None:
        super().__init__()
        self._engine = engine
        self.plan = plan
        self.deterministic = bool(plan.kwargs.get("enable_deterministic_inference"))
        self.features = features_for(self.deterministic)
        self._ids = itertools.count()

    @classmethod
    async def start(cls, config: EngineConfig) -> Self:
        sglang = import_library("sglang", cls)
        kv_port = free_port_range(_dp_size(config)) if config.distributed else None
        plan = plan_server_args(config, server_arg_names(), kv_port)
        log.info("starting SGLang on %s", plan.kwargs["model_path"])
        try:
            engine = sglang.Engine(**plan.kwargs)
        except (ValueError, TypeError, RuntimeError, OSError) as e:
            raise cls.start_failed(e) from None
        return cls(engine, plan)

    def runtime(self) -> EngineRuntime:
        """The page size is the KV block size routers hash with; with KV events on (a worker's,
        or the user's `kv_events_config`) one stream per data-parallel rank, and load reports."""
        events = self.plan.kv_events_endpoint is not None
        return EngineRuntime(
            kv_cache_block_size=self.plan.page_size,
            kv_events=events,
            data_parallel_size=self.plan.dp_size,
            load_metrics=events,
        )

    async def start_feeds(self, publishers: EnginePublishers) -> Relays:
        relays = Relays(publishers)
        try:
            if self.plan.kv_events_endpoint is not None:
                await relays.start_kv_relays(
                    self.plan.kv_events_endpoint, self.plan.kv_events_topic
                )
                relays.start_load(self._engine.port_args.metrics_ipc_name, self.plan.page_size)
        except BaseException:
            await relays.close()
            raise
        return relays

    # -- serving ------------------------------------------------------------------------------------

    def prepare(self, opts: GenerationOptions, visible_stops: tuple[int, ...]) -> dict[str, Any]:
        return sampling_params(opts, deterministic=self.deterministic)

    async def submit(
        self,
        opts: GenerationOptions,
        visible_stops: tuple[int, ...],
        params: dict[str, Any],
        context: Context,
    ) -> LibraryRun:
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
        return _Run(
            self._engine.tokenizer_manager, rid, stream, DeltaMapper(visible_stops, opts.logprobs)
        )

    async def shutdown(self) -> None:
        self._engine.shutdown()


class _Run(LibraryRun):
    """One request in SGLang: its stream, its rid (to abort it) and its delta mapper."""

    def __init__(
        self, manager: Any, rid: str, stream: AsyncGenerator[Any, None], mapper: DeltaMapper
    ) -> None:
        self._manager = manager
        self._rid = rid
        self._stream = stream
        self._mapper = mapper

    async def outputs(self) -> AsyncGenerator[Any, None]:
        """SGLang rejects a bad request with ValueError (its HTTP server's 400) on the first
        pull."""
        async with contextlib.aclosing(self._stream):
            try:
                async for item in self._stream:
                    yield item
            except ValueError as e:
                raise InvalidRequestError(first_line(e)) from None

    def delta(self, output: Any, stopped: bool) -> dict[str, Any] | None:
        return self._mapper.delta(output, stopped)

    @property
    def finished(self) -> bool:
        return self._mapper.finished

    def abort(self) -> None:
        # A no-op until SGLang registered the rid, and after the first abort that went out.
        self._manager.abort_request(rid=self._rid)


def _dp_size(config: EngineConfig) -> int:
    return int((config.extra_engine_args or {}).get("dp_size") or 1)


__all__ = ["SGLangEngine", "free_port_range", "server_arg_names"]
