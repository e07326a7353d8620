"""Chat and completions: turn one HTTP request into a JSON response or an SSE stream."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from asyncio import Task
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dynamo.frontend.http.coalesce import Next, coalesce, stop_pull
from dynamo.frontend.http.errors import error_headers, sse_error, to_error
from dynamo.frontend.http.event_writer import ClientFlow
from dynamo.frontend.http.metrics import FrontendMetrics, RequestTimer
from dynamo.frontend.http.sse import SSEResponse, client_flow
from dynamo.frontend.model_manager import ModelManager
from dynamo.frontend.request_template import AUTO, RequestTemplate
from dynamo.llm.chunks import Answer, ResponseBuilder
from dynamo.llm.errors import ClientDisconnectedError, InvalidRequestError
from dynamo.llm.pipeline import StreamDelta
from dynamo.llm.protocols.openai import ChatCompletionRequest, CompletionRequest
from dynamo.runtime.context import Context

log = logging.getLogger(__name__)

_DONE = b"data: [DONE]\n\n"
_KINDS = {
    "chat": (ChatCompletionRequest, "chat_completions"),
    "completion": (CompletionRequest, "completions"),
}


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


#: Bodies at least this big are parsed and validated on a worker thread: a few MB of JSON take
#: tens of milliseconds, which would stall every other stream on the event loop.
OFFLOAD_BODY_BYTES = 256 * 1024


def error_response(exc: BaseException) -> JSONResponse:
    status, body = to_error(exc)
    return JSONResponse(body, status_code=status, headers=error_headers(exc))


async def parse_body(
    request: Request,
    model_cls: type,
    template: RequestTemplate | None = None,
    max_tokens_key: str | None = AUTO,
) -> Any:
    raw = await request.body()
    if len(raw) < OFFLOAD_BODY_BYTES:
        return _parse(raw, model_cls, template, max_tokens_key)
    return await asyncio.to_thread(_parse, raw, model_cls, template, max_tokens_key)


def _parse(
    raw: bytes, model_cls: type, template: RequestTemplate | None, max_tokens_key: str | None
) -> Any:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRequestError(f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    if template is not None:
        template.apply(data, max_tokens_key)
    return model_cls.model_validate(data)


class OpenAIServing:
    """Serves `/v1/chat/completions` and `/v1/completions` over a `ModelManager`."""

    def __init__(
        self,
        models: ModelManager,
        metrics: FrontendMetrics,
        template: RequestTemplate | None = None,
    ):
        self.models = models
        self.metrics = metrics
        self.template = template

    async def handle(self, kind: str, http_request: Request) -> Response:
        model_cls, endpoint = _KINDS[kind]
        try:
            request = await parse_body(http_request, model_cls, self.template)
            served = self.models.get(request.model)
        except Exception as e:
            return error_response(e)
        context = Context(http_request.headers.get("x-request-id"))
        timer = self.metrics.track(served.name, endpoint, request.stream)
        try:
            stream = (
                served.chat(request, context)
                if kind == "chat"
                else served.completion(request, context)
            )
            # Pull the first piece before answering, so that a request the engine rejects
            # (bad template, no workers, ...) gets a real HTTP status rather than a 200 stream.
            first = await anext(stream, None)
        except BaseException as e:
            timer.finish("error")
            if isinstance(e, asyncio.CancelledError):
                context.kill()
                raise
            return error_response(e)
        builder = ResponseBuilder(
            kind, context.id(), served.name, fingerprint(served), request.continuous_usage
        )
        if request.user:
            log.debug("request %s from user %r", context.id(), request.user)
        if request.stream:
            flow = client_flow(http_request.scope)
            body = self._sse(stream, first, builder, timer, context, request.include_usage, flow)
            return SSEResponse(body, {"x-request-id": context.id()})
        response = await self._unary(stream, first, builder, timer, context, http_request)
        response.headers["x-request-id"] = context.id()
        return response

    async def _sse(
        self,
        stream: AsyncIterator[StreamDelta],
        first: StreamDelta | None,
        builder: ResponseBuilder,
        timer: RequestTimer,
        context: Context,
        include_usage: bool,
        flow: ClientFlow | None = None,
    ) -> AsyncIterator[bytes]:
        """The answer's SSE events; while the client reads slower than the answer comes (its
        transport paused, `flow`), the pieces that arrive meanwhile go out as one event
        (`coalesce`)."""
        sse = builder.sse
        last = first
        status = "error"
        after: Next = None
        try:
            if first is not None:
                timer.on_tokens(first.completion_tokens)
                # One piece of bytes: the first event goes out at once (`EventWriter`), with
                # the annotations that come before it.
                if first.annotations:
                    yield annotation_events(first.annotations) + sse(first)
                else:
                    yield sse(first)
                # Several choices (n > 1) each finish: the stream's end is the last one's.
                async for delta in stream:
                    while delta is not None:
                        if flow is not None and flow.write_paused and delta.finish_reason is None:
                            delta, after = await coalesce(delta, stream, flow)
                        timer.on_tokens(delta.completion_tokens)
                        last = delta
                        if delta.annotations:
                            yield annotation_events(delta.annotations)
                        yield sse(delta)
                        delta, after = (await after if isinstance(after, Task) else after), None
            if include_usage and last is not None:
                yield b"data: " + orjson.dumps(builder.usage_chunk(last)) + b"\n\n"
            status = "success"
        except (asyncio.CancelledError, GeneratorExit):
            # The client went away (cancelled while waiting for the engine, or closed while
            # waiting to send): stop the engine, and let it propagate.
            context.kill()
            timer.finish("error", disconnected=True)
            raise
        except Exception as e:
            yield sse_error(e)
        finally:
            await stop_pull(after)
            await stream.aclose()  # type: ignore[attr-defined]
        timer.finish(status, last.prompt_tokens if last else 0)
        yield _DONE

    async def _unary(
        self,
        stream: AsyncIterator[StreamDelta],
        first: StreamDelta | None,
        builder: ResponseBuilder,
        timer: RequestTimer,
        context: Context,
        http_request: Request,
    ) -> Response:
        async def fold() -> Answer:
            # Timed per piece as a stream is: the first token's time and the gaps between
            # tokens are the same whether the client waits for them one by one or all at once.
            answer = Answer()
            if first is not None:
                timer.on_tokens(first.completion_tokens)
                answer.add(first)
                async for delta in stream:
                    timer.on_tokens(delta.completion_tokens)
                    answer.add(delta)
            return answer

        folding = asyncio.ensure_future(fold())
        watcher = asyncio.ensure_future(_wait_disconnect(http_request))
        try:
            await asyncio.wait({folding, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not folding.done():
                # The client left before the answer was ready: stop generating.
                context.kill()
                folding.cancel()
                timer.finish("error", disconnected=True)
                return error_response(ClientDisconnectedError())
            answer = folding.result()
        except Exception as e:
            timer.finish("error")
            return error_response(e)
        finally:
            watcher.cancel()
            await stream.aclose()  # type: ignore[attr-defined]
        timer.finish("success", answer.last.prompt_tokens if answer.last else 0)
        return JSONResponse(builder.full(answer))


def annotation_events(annotations: dict[str, Any]) -> bytes:
    """Upstream's annotation events: `event: NAME` with the JSON value as an SSE comment (for
    raw SSE readers; the openai SDK fails on an event without data, as it does on upstream's)."""
    return b"".join(
        b"event: " + name.encode() + b"\n: " + orjson.dumps(value) + b"\n\n"
        for name, value in annotations.items()
    )


def fingerprint(served: Any) -> str | None:
    """`system_fingerprint`: names the model's card (weights, tokenizer, template, settings) and
    the engine features, so a change to any of them changes it. Computed once per model."""
    cached = getattr(served, "_system_fingerprint", None)
    if cached is None:
        card = getattr(served, "card", None)
        basis = card.mdcsum() if card is not None else served.name
        features = ",".join(sorted(getattr(served, "features", ())))
        cached = "fp_" + hashlib.sha256(f"{basis}|{features}".encode()).hexdigest()[:12]
        with contextlib.suppress(AttributeError):
            served._system_fingerprint = cached
    return cached


async def _wait_disconnect(request: Request) -> None:
    """Returns when the client closes the connection (the body has already been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
