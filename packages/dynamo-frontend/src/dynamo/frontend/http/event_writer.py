"""Writing a stream's SSE events: the ones ready in the same turn of the event loop go out in
one `send`, so one write to the socket (issue 14 item 3).

The socket write is the largest single cost per event on the frontend (one system call each).
A frontend streaming to many clients at once often has several events of one stream ready
together (the worker's frames arrive several per read); written one by one they cost a system
call each. `EventWriter` queues them and writes them when the stream's task next waits, as one
HTTP chunk: the same events, byte for byte, in fewer writes. An event is never held longer than
the turn of the event loop that made it, and none is merged with another (that happens only for
a client that is behind: `coalesce`).

The stream's first event is not held at all: it carries the time to first token, and at the end
of a turn that is busy with other streams' tokens it would wait behind all of them (under 64
streams that was 5 to 15 ms at the median, docs/performance.md). One write more per request, none
more per token.

It needs the server's flow control, to know without awaiting whether the server's `send` can
complete at once (uvicorn's waits only while the client's transport is paused): `flow_of` finds
it on uvicorn's `send`; under another server events are sent one by one, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol, cast

from starlette.types import Send


class ClientFlow(Protocol):
    """What the server tells of a client's connection: `write_paused` while the client has
    more unread than the transport's high-water mark, and `drain()` returning once it has read
    down to the low-water mark (uvicorn's `FlowControl`)."""

    write_paused: bool

    async def drain(self) -> None: ...


def flow_of(send: Any) -> ClientFlow | None:
    """The flow control behind a server's `send` (uvicorn's request cycle holds it as `flow`);
    None when it has none we know."""
    cycle = getattr(send, "__self__", None)
    flow = getattr(cycle, "flow", None)
    if isinstance(getattr(flow, "write_paused", None), bool) and hasattr(flow, "drain"):
        return flow
    return None


class EventWriter:
    """One stream's events on their way to the server's `send`; see the module docstring."""

    __slots__ = (
        "_error",
        "_first",
        "_flow",
        "_loop",
        "_message",
        "_parts",
        "_scheduled",
        "_send",
        "_sending",
    )

    def __init__(self, send: Send, flow: ClientFlow):
        self._send = send
        self._flow = flow
        self._loop = asyncio.get_running_loop()
        self._parts: list[bytes] = []
        self._scheduled = False
        #: A write left waiting for the client (it was behind when the turn ended).
        self._sending: asyncio.Task[None] | None = None
        #: What a write outside the stream's task raised (the client's connection failed).
        self._error: BaseException | None = None
        #: No event written yet: the next one goes out at once.
        self._first = True
        # Servers copy the body out before `send` returns: one message dict serves every write.
        self._message: dict[str, Any] = {
            "type": "http.response.body",
            "body": b"",
            "more_body": True,
        }

    def add(self, event: bytes) -> bool:
        """Queue an event. True when the caller must `await flush()` before the next one: the
        client is behind, and waiting for it is what slows the stream down to its pace."""
        if self._error is not None:
            raise self._error
        self._parts.append(event)
        if self._flow.write_paused or self._sending is not None:
            return True
        if self._first:
            self._first = False
            self._write_soon()  # now, not at the end of the turn
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._write_soon)
        return False

    async def flush(self) -> None:
        """Write everything queued, waiting for the client if it is behind."""
        body = await self.rest()
        if body:
            self._message["body"] = body
            await self._send(self._message)

    async def rest(self) -> bytes:
        """Take what is queued, after a write left waiting for the client: the body of the
        response's last message (its end goes in the same write)."""
        if self._sending is not None:
            sending, self._sending = self._sending, None
            await sending
        if self._error is not None:
            raise self._error
        return self._take() if self._parts else b""

    def close(self) -> None:
        """Drop what was not written (the client left)."""
        self._parts.clear()
        if self._sending is not None:
            self._sending.cancel()

    def _take(self) -> bytes:
        parts, self._parts = self._parts, []
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _write_soon(self) -> None:
        """Write what is queued: at the end of the turn that made it, or at once for the first
        event."""
        self._scheduled = False
        if not self._parts or self._sending is not None or self._error is not None:
            return
        if self._flow.write_paused:  # the client fell behind meanwhile: wait for it in a task
            self._sending = self._loop.create_task(self._write_when_drained())
            return
        self._message["body"] = self._take()
        # The server's `send` waits only while the client's transport is paused, which it is
        # not: it runs to its end here, outside any task.
        # Starlette types `send` as returning any awaitable; uvicorn's is a coroutine function.
        write = cast("Coroutine[Any, Any, None]", self._send(self._message))
        try:
            write.send(None)
        except StopIteration:
            return
        except BaseException as e:
            self._error = e
            return
        write.close()
        self._error = RuntimeError("the server's send waited while its transport was writable")

    async def _write_when_drained(self) -> None:
        try:
            while self._parts:
                self._message["body"] = self._take()
                await self._send(self._message)
        except Exception as e:  # handed to the stream's task, which raises it
            self._error = e
