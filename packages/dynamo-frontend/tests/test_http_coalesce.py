"""How SSE events leave (real uvicorn, real sockets): a streamed chat answer to a client that reads
slower than it is made gets the pieces that come while its transport is paused merged, in fewer
events with the same text and finish, and a client that keeps up one event per piece (the echo
engine); the first event leaves at once, the others ready in the same turn of the event loop in
one HTTP chunk (one socket write), byte for byte, events that come one at a time leave one at a
time, and events made before the generator fails are not lost (`EventWriter`)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from dynamo.frontend.http.app import build_app
from dynamo.frontend.http.coalesce import merge, mergeable
from dynamo.frontend.http.sse import SSEResponse, capture_raw_send, client_flow
from dynamo.llm.stream_delta import StreamDelta
from dynamo.testing import serve_asgi

#: Far more than the socket buffers and uvicorn's 64 KiB high-water mark hold (~150 bytes an
#: event), so a client that reads nothing pauses the server's transport.
LONG = "".join(chr(ord("a") + i % 26) for i in range(4000))
#: Under 64 KiB of events in all: the transport can never be paused by it.
SHORT = "short answer, one event per character"


class Recorded:
    """The outermost layer, as the frontend's drain gate is; keeps each request's scope so the
    test can see the connection's flow control, and shrinks the server's send buffer so that a
    client that does not read is felt at once."""

    def __init__(self, app: Any):
        self.app = app
        self.scopes: list[dict] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        capture_raw_send(scope, send)
        if scope["type"] == "http":
            self.scopes.append(scope)
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        await self.app(scope, receive, send)


def _body(text: str) -> bytes:
    return orjson.dumps(
        {"model": "echo", "stream": True, "messages": [{"role": "user", "content": text}]}
    )


def _events(sse: bytes) -> list[dict]:
    """The JSON events of an SSE body (the `[DONE]` marker left out)."""
    out = []
    for block in sse.split(b"\n\n"):
        if block.startswith(b"data: ") and block != b"data: [DONE]":
            out.append(orjson.loads(block[len(b"data: ") :]))
    return out


def _answer(events: list[dict]) -> tuple[str, str | None, list[str]]:
    """The concatenated text, the finish reason, and each event's piece of text."""
    pieces = [e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]]
    finish = next(
        (e["choices"][0]["finish_reason"] for e in reversed(events) if e["choices"]), None
    )
    return "".join(pieces), finish, pieces


def _chunks(raw: bytes) -> list[bytes]:
    """The chunks of an HTTP/1.1 chunked body, as the server wrote them (those before a cut)."""
    chunks, rest = [], raw
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        if not size_line or int(size_line, 16) == 0:
            return chunks
        size = int(size_line, 16)
        chunks.append(rest[:size])
        rest = rest[size + 2 :]


async def _slow_client(url: str, recorded: Recorded, text: str) -> bytes:
    """Send the request, read nothing until the server's transport is paused (this client is
    behind), then read everything; the SSE body."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    body = _body(text)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\nconnection: close\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()

    async def paused() -> None:
        while True:
            flow = client_flow(recorded.scopes[-1]) if recorded.scopes else None
            if flow is not None and flow.write_paused:
                return
            await asyncio.sleep(0.005)

    await asyncio.wait_for(paused(), 60)
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, chunked = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    return b"".join(_chunks(chunked))


async def test_a_slow_client_gets_the_same_answer_in_fewer_events(translated):
    state, _ = translated.app_state()
    recorded = Recorded(build_app(state))
    async with serve_asgi(recorded) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            fast = await http.post("/v1/chat/completions", content=_body(LONG))
        slow = await _slow_client(url, recorded, LONG)
    fast_text, fast_finish, _ = _answer(_events(fast.content))
    slow_text, slow_finish, slow_pieces = _answer(_events(slow))
    assert fast_text == slow_text == LONG
    assert fast_finish == slow_finish == "stop"
    assert len(slow_pieces) < len(LONG)  # merged while the client was behind
    assert max(len(p) for p in slow_pieces) > 1


async def test_a_client_that_keeps_up_gets_one_event_per_piece(translated):
    state, _ = translated.app_state()
    recorded = Recorded(build_app(state))
    async with serve_asgi(recorded) as url, httpx.AsyncClient(base_url=url) as http:
        r = await http.post("/v1/chat/completions", content=_body(SHORT))
    text, finish, pieces = _answer(_events(r.content))
    assert (text, finish) == (SHORT, "stop")
    assert [p for p in pieces if p] == list(SHORT)  # nothing merged


def test_only_pieces_of_one_choice_with_nothing_of_their_own_merge():
    a = StreamDelta("Hel", None, 5, 3, cached_tokens=2, annotations={"x": 1})
    b = StreamDelta("lo", "stop", 5, 5, stop_reason="</s>", reasoning="r")
    assert mergeable(a, b)
    merged = merge(a, b)
    assert (merged.text, merged.finish_reason, merged.completion_tokens) == ("Hello", "stop", 5)
    assert (merged.stop_reason, merged.reasoning, merged.cached_tokens) == ("</s>", "r", 2)
    assert merged.annotations == {"x": 1}  # the first piece's, sent once
    assert not mergeable(merged, StreamDelta("!"))  # nothing follows a finished piece
    assert not mergeable(a, StreamDelta("x", index=1))  # another choice (n > 1)
    assert not mergeable(a, StreamDelta("x", annotations={"y": 2}))


def _events_app() -> Recorded:
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

    return Recorded(Starlette(routes=[Route("/{kind}", route, methods=["GET"])]))


async def _written(url: str, path: str) -> list[bytes]:
    """The HTTP chunks of a response to GET `path`."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET %s HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n" % path.encode())
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    return _chunks(raw.partition(b"\r\n\r\n")[2])


async def test_the_first_event_leaves_at_once_and_the_rest_ready_together_in_one_write():
    async with serve_asgi(_events_app()) as url:
        chunks = await _written(url, "/burst")
    # The first (the time to first token) does not wait for the end of the turn.
    assert chunks == [b"data: 0\n\n", b"".join(b"data: %d\n\n" % i for i in range(1, 50))]


async def test_events_that_come_apart_leave_apart():
    async with serve_asgi(_events_app()) as url:
        chunks = await _written(url, "/paced")
    assert chunks == [b"data: %d\n\n" % i for i in range(5)]


async def test_events_made_before_the_generator_fails_still_go_out():
    async with serve_asgi(_events_app()) as url:
        chunks = await _written(url, "/failing")
    assert b"".join(chunks) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
