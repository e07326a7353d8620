"""Server-sent events written straight to the ASGI server's `send`: the per-token send path.

Starlette's `StreamingResponse` sends each event as a new message dict through every layer of
the app's middleware (Starlette's error and exception middleware, each wrapping `send` in a
coroutine of its own, our body limit, the route's wrapper), and runs each response in an
anyio task group to notice a client that leaves. An SSE stream of a chat completion is one event
per token, so that is paid per token. `SSEResponse` instead:

- sends the response's start (status and headers) and its end through the app's `send`, so the
  middleware sees a normal response (CORS adds its headers, the error middleware knows it
  started);
- sends every event in between through the server's own `send`, which `capture_raw_send` put in
  the ASGI scope at the outermost layer: no wrapper runs per event. That is safe because every
  layer in between only looks at the start of a response (CORS's headers, "has it started") or
  at a body it is still reading (the body limit), and the body was read before the stream began;
- reuses one message dict for all the events (ASGI servers copy the body out before `send`
  returns), so the only allocations per event are the event's own bytes;
- under uvicorn, writes the events that are ready in the same turn of the event loop with one
  `send` (`event_writer`): the same bytes in fewer socket writes;
- watches for the client leaving with one task per request, which cancels the stream: the
  events' generator gets the cancellation (or, if it was waiting on `send`, is closed) and stops
  the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from dynamo.frontend.http.event_writer import ClientFlow, EventWriter, flow_of

#: Where the outermost ASGI layer leaves the server's `send` for `SSEResponse`.
RAW_SEND = "dynamo.raw_send"

#: Headers of every event stream: no caching, and no buffering in a proxy (nginx) on the way.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def capture_raw_send(scope: Scope, send: Send) -> None:
    """Keep the server's `send` in the request's scope (call at the outermost ASGI layer)."""
    scope[RAW_SEND] = send


class SSEResponse(Response):
    """A `text/event-stream` response whose body is `events`, each one ready-made SSE bytes.

    The generator is expected to stop the engine when it is cancelled or closed early (the
    client left); it is always either run to its end or closed before this returns.
    """

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], headers: Mapping[str, str] | None = None):
        # Not Response.__init__: it would set a content-length for an empty body.
        self.status_code = 200
        self.background = None
        self.events = events
        self.init_headers({**SSE_HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_send = scope.get(RAW_SEND, send)
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        task = asyncio.current_task()
        assert task is not None
        left = False

        async def watch() -> None:
            nonlocal left
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
            except Exception:
                pass
            left = True
            task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        flow = flow_of(raw_send)
        writer = EventWriter(raw_send, flow) if flow is not None else None
        message: dict[str, Any] = {"type": "http.response.body", "body": b"", "more_body": True}
        try:
            rest = b""
            if writer is None:
                async for data in self.events:
                    message["body"] = data
                    await raw_send(message)
            else:
                try:
                    async for data in self.events:
                        if writer.add(data):
                            await writer.flush()
                except Exception:
                    with contextlib.suppress(Exception):
                        await writer.flush()  # the events made before the failure still go
                    raise
                rest = await writer.rest()
            watcher.cancel()  # before the end: a finished response reads as a disconnect
            await send({"type": "http.response.body", "body": rest, "more_body": False})
        except asyncio.CancelledError:
            await _close(self.events)
            if not left or task.uncancel() > 0:
                raise
            # The client left: the engine is stopped, there is no one to answer.
        except OSError:
            await _close(self.events)  # ASGI 2.4 servers raise on a send after the client left
        finally:
            watcher.cancel()
            if writer is not None:
                writer.close()


def client_flow(scope: Scope) -> ClientFlow | None:
    """The flow control of the request's connection (`event_writer.flow_of` on the server's
    `send` the outermost layer kept); None under a server without one we know."""
    return flow_of(scope.get(RAW_SEND))


async def _close(events: AsyncIterator[bytes]) -> None:
    """Close the events' generator if it is still suspended (a no-op once it has ended)."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
