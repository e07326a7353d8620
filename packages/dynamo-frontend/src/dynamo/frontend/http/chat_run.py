"""One chat request through the chat pipeline, as the endpoints that translate to chat see it.

The Responses API and Anthropic Messages are other spellings of a chat completion: they build a
`ChatCompletionRequest`, run it here through the same `ServedModel.chat` (preprocess → route →
engine → detokenize) that `/v1/chat/completions` uses, and read back the same
`chat.completion.chunk` dicts that endpoint streams, ending with a usage chunk. What the chat path
learns (tool calls, reasoning) reaches them without a second copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson
from starlette.requests import Request

from dynamo.frontend.http.metrics import FrontendMetrics, RequestTimer
from dynamo.frontend.http.serving import _wait_disconnect
from dynamo.frontend.model_manager import ModelManager
from dynamo.llm.chunks import ResponseBuilder, usage
from dynamo.llm.errors import ClientDisconnectedError
from dynamo.llm.pipeline import ServedModel, StreamDelta
from dynamo.llm.protocols.openai import ChatCompletionRequest
from dynamo.runtime.context import Context

T = TypeVar("T")


@dataclass
class ChatRun:
    """A chat stream already started (its first piece pulled, so a bad request failed early)."""

    model: ServedModel
    context: Context
    timer: RequestTimer
    _deltas: AsyncIterator[StreamDelta]
    _first: StreamDelta | None

    def __post_init__(self) -> None:
        self._last = self._first

    @property
    def prompt_tokens(self) -> int:
        """The prompt's length in tokens, as the latest piece says (a text-level engine may
        only tell it at the end)."""
        return self._last.prompt_tokens if self._last is not None else 0

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The `chat.completion.chunk` dicts `/v1/chat/completions` would stream, then one usage
        chunk (no choices) with the token counts."""
        builder = ResponseBuilder("chat", self.context.id(), self.model.name)
        last = self._first
        if last is not None:
            self.timer.on_tokens(last.completion_tokens)
            yield builder.chunk(last)
            if last.finish_reason is None:
                async for delta in self._deltas:
                    self.timer.on_tokens(delta.completion_tokens)
                    last = self._last = delta
                    yield builder.chunk(delta)
        yield (
            builder.usage_chunk(last) if last is not None else {"choices": [], "usage": usage(0, 0)}
        )

    async def close(self) -> None:
        await self._deltas.aclose()  # type: ignore[attr-defined]


class ChatRunner:
    """Starts chat runs for one endpoint family, with its metrics label."""

    def __init__(self, models: ModelManager, metrics: FrontendMetrics, endpoint: str):
        self.models = models
        self.metrics = metrics
        self.endpoint = endpoint

    async def start(self, request: ChatCompletionRequest, request_id: str | None) -> ChatRun:
        """Look the model up and start generating; raises the request's error (unknown model,
        bad template, prompt too long, no workers) before any byte is sent."""
        served = self.models.get(request.model)
        context = Context(request_id)
        timer = self.metrics.track(served.name, self.endpoint, request.stream)
        try:
            deltas = served.chat(request, context)
            first = await anext(deltas, None)
        except BaseException as e:
            timer.finish("error")
            if isinstance(e, asyncio.CancelledError):
                context.kill()
            raise
        return ChatRun(served, context, timer, deltas, first)


async def until_disconnect(
    work: Callable[[], Awaitable[T]], http_request: Request, context: Context
) -> T:
    """Run `work` (the folding of a non-streamed answer), stopping the engine and raising
    `ClientDisconnectedError` (499) if the client leaves first."""
    task = asyncio.ensure_future(work())
    watcher = asyncio.ensure_future(_wait_disconnect(http_request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            context.kill()
            task.cancel()
            raise ClientDisconnectedError()
        return task.result()
    finally:
        watcher.cancel()


Event = dict[str, Any]


class Translator(Protocol):
    """Turns the chat chunks of one run into another API's events and final object."""

    def start(self) -> list[Event]: ...
    def on_chunk(self, chunk: dict[str, Any]) -> list[Event]: ...
    def finish(self) -> list[Event]: ...


def sse_event(event: Event) -> bytes:
    """A typed SSE event (`event: <type>`), as the Responses and Anthropic APIs send them."""
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


async def fold(run: ChatRun, translator: Translator, http_request: Request) -> None:
    """A non-streamed answer: run to the end (the events are dropped; the translator keeps the
    final object). Raises the run's error, or `ClientDisconnectedError` if the client left."""

    async def drain() -> None:
        translator.start()
        async for chunk in run.chunks():
            translator.on_chunk(chunk)
        translator.finish()

    try:
        await until_disconnect(drain, http_request, run.context)
    except Exception as e:
        run.timer.finish("error", disconnected=isinstance(e, ClientDisconnectedError))
        raise
    finally:
        await run.close()
    run.timer.finish("success", run.prompt_tokens)


async def stream(
    run: ChatRun,
    translator: Translator,
    on_error: Callable[[Exception], list[bytes]],
    on_success: Callable[[], None] | None = None,
) -> AsyncIterator[bytes]:
    """A streamed answer: the translator's events as SSE; an error mid-stream becomes the
    events `on_error` makes of it; a client that leaves stops the engine."""
    status = "error"
    try:
        for event in translator.start():
            yield sse_event(event)
        async for chunk in run.chunks():
            for event in translator.on_chunk(chunk):
                yield sse_event(event)
        for event in translator.finish():
            yield sse_event(event)
        status = "success"
    except (asyncio.CancelledError, GeneratorExit):
        # The client left, while we waited for the engine or to send: stop the engine.
        run.context.kill()
        run.timer.finish("error", disconnected=True)
        raise
    except Exception as e:
        for data in on_error(e):
            yield data
    finally:
        await run.close()
    run.timer.finish(status, run.prompt_tokens)
    if status == "success" and on_success is not None:
        on_success()
