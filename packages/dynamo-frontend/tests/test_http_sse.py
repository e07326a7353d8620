"""`SSEResponse`: events straight to the server's `send`, the end through the app's, and a client
that leaves closes the events' generator (real uvicorn, real HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from dynamo.frontend.http.sse import SSEResponse, capture_raw_send
from dynamo.testing import serve_asgi


class CountingMiddleware:
    """Counts the messages that pass through the app's `send`."""

    def __init__(self, app: Any):
        self.app = app
        self.messages: list[str] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        async def counted(message: dict) -> None:
            self.messages.append(message["type"])
            await send(message)

        await self.app(scope, receive, counted)


class Capture:
    """The outermost layer, as the frontend's drain gate is."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        capture_raw_send(scope, send)
        await self.app(scope, receive, send)


class Events:
    """`count` events, then (with `stall`) waiting forever; records how the generator ended."""

    def __init__(self, count: int, stall: bool = False):
        self.count = count
        self.stall = stall
        self.ended: asyncio.Event | None = None
        self.how = ""

    async def __call__(self) -> AsyncIterator[bytes]:
        self.ended = asyncio.Event()
        try:
            for i in range(self.count):
                yield b"data: %d\n\n" % i
            if self.stall:
                await asyncio.Event().wait()
            self.how = "finished"
        except asyncio.CancelledError:
            self.how = "cancelled"
            raise
        except GeneratorExit:
            self.how = "closed"
            raise
        finally:
            self.ended.set()


def app_for(events: Events) -> tuple[Any, CountingMiddleware]:
    async def route(request: Request) -> SSEResponse:
        return SSEResponse(events(), {"x-request-id": "r1"})

    counting = CountingMiddleware(Starlette(routes=[Route("/sse", route, methods=["GET"])]))
    return counting, counting


async def test_events_skip_the_middleware_but_the_start_and_end_do_not():
    events = Events(50)
    app, counting = app_for(events)
    async with serve_asgi(Capture(app)) as url, httpx.AsyncClient() as client:
        r = await client.get(url + "/sse")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-request-id"] == "r1"
    assert r.content == b"".join(b"data: %d\n\n" % i for i in range(50))
    assert counting.messages == ["http.response.start", "http.response.body"]
    assert events.how == "finished"


async def test_without_a_captured_send_every_event_goes_through_the_app():
    events = Events(5)
    app, counting = app_for(events)
    async with serve_asgi(app) as url, httpx.AsyncClient() as client:
        r = await client.get(url + "/sse")
    assert r.content == b"".join(b"data: %d\n\n" % i for i in range(5))
    assert counting.messages == ["http.response.start"] + ["http.response.body"] * 6


async def test_a_client_leaving_a_stalled_stream_cancels_it():
    events = Events(1, stall=True)
    app, _ = app_for(events)
    async with serve_asgi(Capture(app)) as url, httpx.AsyncClient() as client:
        async with client.stream("GET", url + "/sse") as r:
            async for line in r.aiter_lines():
                assert line == "data: 0"
                break
        assert events.ended is not None
        await asyncio.wait_for(events.ended.wait(), 5)
        assert events.how == "cancelled"


async def test_a_send_that_raises_closes_the_generator():
    """ASGI 2.4 servers raise OSError from `send` once the client has gone: the generator,
    suspended at its yield, is closed (so it stops the engine) and the response ends quietly."""
    events = Events(10, stall=True)
    sent: list[dict] = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body":
            raise OSError("client gone")
        sent.append(message)

    async def receive() -> dict:
        await asyncio.Event().wait()
        return {}

    await SSEResponse(events())({"type": "http"}, receive, send)
    assert events.how == "closed"
    assert [m["type"] for m in sent] == ["http.response.start"]
