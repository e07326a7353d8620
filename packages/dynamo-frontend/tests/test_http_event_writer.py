"""`EventWriter` under real uvicorn: events ready in the same turn of the event loop leave in one
HTTP chunk (one socket write), byte for byte the events they are; events that come one at a
time still leave one at a time; events made before the generator fails are not lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from dynamo.frontend.http.sse import SSEResponse, capture_raw_send
from dynamo.testing import serve_asgi


class Capture:
    """The outermost layer, as the frontend's drain gate is."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        capture_raw_send(scope, send)
        await self.app(scope, receive, send)


def _app() -> Capture:
    async def burst() -> AsyncIterator[bytes]:
        for i in range(50):  # all ready at once, as frames read together from a worker
            yield b"data: %d\n\n" % i

    async def paced() -> AsyncIterator[bytes]:
        for i in range(5):
            await asyncio.sleep(0.01)  # one at a time, as tokens at an engine's pace
            yield b"data: %d\n\n" % i

    async def failing() -> AsyncIterator[bytes]:
        for i in range(3):
            yield b"data: %d\n\n" % i
        raise RuntimeError("the events' generator broke")

    async def route(request: Request) -> SSEResponse:
        kinds = {"burst": burst, "paced": paced, "failing": failing}
        return SSEResponse(kinds[request.path_params["kind"]]())

    return Capture(Starlette(routes=[Route("/{kind}", route, methods=["GET"])]))


async def _chunks(url: str, path: str) -> list[bytes]:
    """The HTTP chunks of a response, as the server wrote them."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET %s HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n" % path.encode())
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    rest = raw.partition(b"\r\n\r\n")[2]
    chunks = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        if not size_line:  # the server cut the body short
            return chunks
        size = int(size_line, 16)
        if size == 0:
            return chunks
        chunks.append(rest[:size])
        rest = rest[size + 2 :]


async def test_events_ready_together_leave_in_one_write():
    async with serve_asgi(_app()) as url:
        chunks = await _chunks(url, "/burst")
    assert b"".join(chunks) == b"".join(b"data: %d\n\n" % i for i in range(50))
    assert len(chunks) == 1


async def test_events_that_come_apart_leave_apart():
    async with serve_asgi(_app()) as url:
        chunks = await _chunks(url, "/paced")
    assert chunks == [b"data: %d\n\n" % i for i in range(5)]


async def test_events_made_before_the_generator_fails_still_go_out():
    async with serve_asgi(_app()) as url:
        chunks = await _chunks(url, "/failing")
    assert b"".join(chunks) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
