"""`LibraryEngine`: what Backend engines over an inference library (SGLang, TensorRT-LLM) share.

Each such engine maps our `PreprocessedRequest` to its library's call and the library's outputs
back to `LLMEngineOutput` deltas; the rest is the same for all of them and lives here once:

- reading the request with `GenerationOptions` (refusing, by name, the optional fields the
  engine does not list in `supported_fields`);
- a request whose context is already stopped ends with `cancelled` (nothing when killed)
  without reaching the library;
- cancellation: when the context is stopped (client gone, a stop string matched by our
  decoder), the request is aborted in the library, again every `abort_retry_s` for libraries
  that drop an abort that comes before they registered the request (SGLang); a consumer that
  leaves before the last output aborts it too, so the library frees its slot;
- a killed request ends without a final delta;
- `attach`: the publishers a worker built go to the engine's feeds (its relays or pollers of
  the library's KV events and statistics, `Feeds`), which `close` stops before the library is
  shut down; the publishers themselves are the worker's (`dynamo.llm.kv.engine_publishers`).

A subclass provides `prepare` (the library's sampling parameters), `submit` (start the request,
return a `LibraryRun`), `start_feeds` and `shutdown`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, ClassVar, Protocol

from dynamo.llm.engine import Engine
from dynamo.llm.errors import EngineError, EngineFailedError, first_line
from dynamo.llm.generation_options import GenerationOptions
from dynamo.llm.kv.engine_publishers import EnginePublishers
from dynamo.llm.model_type import ModelType
from dynamo.runtime.context import Context


class LibraryRun(abc.ABC):
    """One request inside the library, as `LibraryEngine.generate` drives it."""

    @abc.abstractmethod
    def outputs(self) -> AsyncGenerator[Any, None]:
        """The library's outputs, its errors already ours (`InvalidRequestError` for what it
        rejects, `EngineFailedError` for its own failures). Closing it releases the library's
        stream."""

    @abc.abstractmethod
    def delta(self, output: Any, stopped: bool) -> dict[str, Any] | None:
        """One output as a delta (None: nothing new); `stopped`: the context is stopped."""

    @property
    @abc.abstractmethod
    def finished(self) -> bool:
        """The last delta (the one with a `finish_reason`) was made."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Cancel the request in the library (a no-op once it ended)."""


class Feeds(Protocol):
    """What feeds a worker's publishers from the library; `close` stops it."""

    async def close(self) -> None: ...


class LibraryEngine(Engine):
    """A Backend engine over an inference library; see the module docstring."""

    model_type = ModelType.Backend
    requires_model = True
    #: The library's name in messages ("SGLang").
    library_name: ClassVar[str]
    #: The `dynamo.llm.generation_options.OPTIONAL_FIELDS` this engine honours.
    supported_fields: ClassVar[frozenset[str]] = frozenset()
    #: Seconds between repeated aborts until the library has the request; None: abort once.
    abort_retry_s: ClassVar[float | None] = None

    def __init__(self) -> None:
        self.feeds: Feeds | None = None
        self._closed = False

    @classmethod
    def start_failed(cls, e: BaseException) -> EngineError:
        """The one-line error for a library that could not start."""
        return EngineError(f"{cls.library_name} could not start: {first_line(e)}")

    # -- what a subclass provides -------------------------------------------------------------------

    @abc.abstractmethod
    def prepare(self, opts: GenerationOptions, visible_stops: tuple[int, ...]) -> Any:
        """The library's sampling parameters for `opts`; `InvalidRequestError` for what the
        library cannot take. `visible_stops`: the stop token ids the client asked for."""

    @abc.abstractmethod
    async def submit(
        self, opts: GenerationOptions, visible_stops: tuple[int, ...], params: Any, context: Context
    ) -> LibraryRun:
        """Hand the request to the library."""

    @abc.abstractmethod
    async def start_feeds(self, publishers: EnginePublishers) -> Feeds:
        """Start feeding `publishers` from the library (see `Engine.attach`)."""

    @abc.abstractmethod
    async def shutdown(self) -> None:
        """Shut the library down (once, after the last request)."""

    # -- the engine contract ------------------------------------------------------------------------

    async def attach(self, publishers: EnginePublishers) -> None:
        if self.feeds is not None:
            raise RuntimeError(f"{type(self).__name__} already has publishers")
        self.feeds = await self.start_feeds(publishers)

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        if self._closed:
            raise EngineFailedError(f"the {self.library_name} engine is shut down")
        opts = GenerationOptions.from_request(request, self.supported_fields)
        stop = request.get("stop_conditions") or {}
        visible = tuple(int(t) for t in stop.get("stop_token_ids") or ())
        params = self.prepare(opts, visible)
        if context.is_stopped():
            if not context.is_killed():
                yield {"token_ids": [], "finish_reason": "cancelled"}
            return
        run = await self.submit(opts, visible, params, context)
        watcher = asyncio.ensure_future(self._abort_when_stopped(context, run))
        try:
            async with contextlib.aclosing(run.outputs()) as outputs:
                async for output in outputs:
                    delta = run.delta(output, context.is_stopped())
                    if run.finished and context.is_killed():
                        return
                    if delta is not None:
                        yield delta
                    if run.finished:
                        return
        finally:
            watcher.cancel()
            if not run.finished:
                # The consumer left (or the library failed) before the end: free its slot.
                run.abort()

    async def _abort_when_stopped(self, context: Context, run: LibraryRun) -> None:
        await context.stopped()
        while True:
            run.abort()
            if self.abort_retry_s is None:
                return
            await asyncio.sleep(self.abort_retry_s)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.feeds is not None:
            await self.feeds.close()
        await self.shutdown()


__all__ = ["Feeds", "LibraryEngine", "LibraryRun"]
