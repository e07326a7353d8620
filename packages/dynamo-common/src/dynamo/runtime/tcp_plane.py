"""Requests over direct TCP: one listening socket per worker process (`TcpRequestServer`), one
reused connection per worker in each caller (`TcpClient`), many streams multiplexed on it.

Built on asyncio `Protocol`s (no stream reader/writer layers per message) with the sans-IO
framing of `codec`. The worker queues the frames that become ready in one turn of the event loop
and writes them with one `write`. A worker process that dies closes its sockets, so its callers'
streams fail at once; a caller that goes away closes its connection, so the worker stops
generating for it. A frozen worker is found by the same acknowledgement and heartbeat timeouts
as over NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson

from dynamo.runtime import codec
from dynamo.runtime.ack_timeout import AckTimeout
from dynamo.runtime.context import Context
from dynamo.runtime.errors import InstanceGoneError, PayloadTooLargeError
from dynamo.runtime.response_stream import (
    FINAL,
    FIRST_FRAME_TIMEOUT_SECONDS,
    HEARTBEAT,
    IDLE_TIMEOUT_SECONDS,
    Handler,
    ResponseFrames,
    finish_tasks,
    serve_stream,
    takes_context,
)
from dynamo.runtime.tcp_streams import SilenceWatch, StreamFrames

log = logging.getLogger(__name__)

#: Upstream's default for DYN_TCP_MAX_MESSAGE_SIZE.
DEFAULT_MAX_MESSAGE = 32 * 1024 * 1024
_CONNECT_TIMEOUT_SECONDS = 3.0
#: The most a new stream waits for a worker's first frame, however loaded the host has been.
_ACK_TIMEOUT_CEILING_SECONDS = 8.0
_CLOSED = None  # queued to every stream of a connection that is lost


def advertised_host(towards: str) -> str:
    """The address of this host's interface that reaches `towards` (the discovery server's
    host): what callers on other hosts can connect to. No packet is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((towards, 9))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def split_address(address: str) -> tuple[str, int, str]:
    """`host:port/subject` (a TCP instance record's address) as (host, port, subject)."""
    where, _, subject = address.partition("/")
    host, _, port = where.rpartition(":")
    return host.strip("[]"), int(port), subject


# -- the worker's side ---------------------------------------------------------------------


class TcpEndpoint:
    """One endpoint served on the process's TCP server: its handler and in-flight requests."""

    def __init__(self, server: TcpRequestServer, subject: str, handler: Handler):
        self.server = server
        self.subject = subject
        self.handler = handler
        self.with_context = takes_context(handler)
        self.accepting = True
        self.inflight: set[asyncio.Task] = set()

    @property
    def address(self) -> str:
        return f"{self.server.address}/{self.subject}"

    async def start(self) -> None:
        self.server.endpoints[self.subject] = self

    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Stop taking requests (a new one gets a 503 error frame, so the caller tries another
        worker) and finish the in-flight ones, as `EndpointServer.drain`."""
        self.accepting = False
        await finish_tasks(list(self.inflight), timeout, self.subject)
        self.server.endpoints.pop(self.subject, None)


class _Framed(asyncio.Protocol):
    """A connection carrying the plane's messages, either side: its transport, and the reader
    that cuts the bytes into messages (a peer announcing one over the limit is cut off)."""

    transport: asyncio.Transport | None
    reader: codec.TcpMessageReader
    #: Messages queued in this turn of the event loop, written together at its end.
    _out: list[bytes]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def write_soon(self, message: bytes) -> None:
        """Queue a message; everything queued in this turn of the loop goes out in one write
        (one system call for the frames, requests or stops of many streams)."""
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(message)

    def write_now(self, message: bytes) -> None:
        """Write a message at once, after what is queued (which then goes in the same write)."""
        self._out.append(message)
        self._flush()

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def messages(self, data: bytes) -> list[tuple[int, int, bytes]]:
        try:
            return self.reader.feed(data)
        except codec.TcpMessageTooLargeError as e:
            log.warning("closing a request-plane connection: %s", e)
            if self.transport is not None:
                self.transport.close()
            return []


class _WorkerConnection(_Framed):
    """One caller's connection to this worker: its requests, and the frames going back."""

    def __init__(self, server: TcpRequestServer):
        self.server = server
        self.reader = codec.TcpMessageReader(server.max_message)
        #: With a token, nothing is taken from the caller until it has shown it.
        self.authenticated = server.token is None
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, tuple[Context, asyncio.Task]] = {}
        self._out: list[bytes] = []
        self._writable = asyncio.Event()
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        for stream_id, kind, payload in self.messages(data):
            if not self.authenticated:
                if kind == codec.KIND_AUTH and self.server.accepts(payload):
                    self.authenticated = True
                    continue
                log.warning(
                    "refused a request-plane connection from %s: no or wrong DYN_TCP_RPC_TOKEN",
                    self.transport.get_extra_info("peername") if self.transport else "?",
                )
                if self.transport is not None:
                    self.transport.close()
                return
            if kind == codec.KIND_REQUEST:
                self._start(stream_id, payload)
            elif kind == codec.KIND_CONTROL:
                entry = self.requests.get(stream_id)
                if entry is None:
                    continue
                context, task = entry
                if payload == b"kill":
                    context.kill()
                    task.cancel()
                else:
                    context.stop_generating()

    def _start(self, stream_id: int, payload: bytes) -> None:
        try:
            subject, body = codec.parse_tcp_request(payload)
            request_id, data = codec.decode_request(body)
        except Exception:
            self.queue(stream_id, codec.error_frame(1, "malformed request"))
            return
        endpoint = self.server.endpoints.get(subject)
        if endpoint is None or not endpoint.accepting:
            self.queue(stream_id, codec.error_frame(1, "worker is shutting down", 503))
            return
        context = Context(request_id)

        async def send(frame: bytes, _probing: bool) -> None:
            self.queue(stream_id, frame)  # queued first, so frames keep their order
            if not self._writable.is_set():
                await self._writable.wait()  # the caller reads slower than we generate

        task = asyncio.create_task(
            serve_stream(
                endpoint.handler, endpoint.with_context, data, context, send, endpoint.subject
            )
        )
        self.requests[stream_id] = (context, task)
        endpoint.inflight.add(task)

        def done(_: asyncio.Task) -> None:
            self.requests.pop(stream_id, None)
            endpoint.inflight.discard(task)

        task.add_done_callback(done)

    def queue(self, stream_id: int, frame: bytes) -> None:
        """Queue a frame (`write_soon`)."""
        self.write_soon(codec.tcp_message(stream_id, codec.KIND_FRAME, frame))

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        # The caller is gone (its process died or it closed the connection): nobody reads.
        self.transport = None
        self._writable.set()
        for context, task in list(self.requests.values()):
            context.kill()
            task.cancel()
        self.server.connections.discard(self)


class TcpRequestServer:
    """The process's TCP request-plane socket; endpoints register on it by subject."""

    def __init__(
        self,
        host: str,
        port: int = 0,
        max_message: int = DEFAULT_MAX_MESSAGE,
        token: str | None = None,
    ):
        #: `DYN_TCP_RPC_TOKEN`: callers must send it first on each connection (None: open).
        self.token = token
        self.host = host
        self.port = port
        self.max_message = max_message
        self.endpoints: dict[str, TcpEndpoint] = {}
        self.connections: set[_WorkerConnection] = set()
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def accepts(self, presented: bytes) -> bool:
        """Whether a caller's token is ours (compared in constant time)."""
        assert self.token is not None
        return hmac.compare_digest(presented, self.token.encode())

    def _connection(self) -> _WorkerConnection:
        connection = _WorkerConnection(self)
        self.connections.add(connection)
        return connection

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("request plane listening on tcp %s", self.address)

    def endpoint(self, subject: str, handler: Handler) -> TcpEndpoint:
        return TcpEndpoint(self, subject, handler)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self.connections):
                if connection.transport is not None:
                    connection.transport.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None


# -- the caller's side ---------------------------------------------------------------------


class _CallerConnection(_Framed):
    """This process's connection to one worker: the frames of each stream go to its buffer."""

    def __init__(self, max_message: int, token: str | None = None):
        self.reader = codec.TcpMessageReader(max_message)
        self.token = token
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, StreamFrames] = {}
        self._out = []
        self._ids = itertools.count(1)
        self.loop = asyncio.get_running_loop()
        #: When the worker last sent anything (loop time).
        self.last_heard = self.loop.time()
        #: How long a new stream waits for its first frame: adapts to how loaded the host is.
        self.ack_timeout = AckTimeout(FIRST_FRAME_TIMEOUT_SECONDS, _ACK_TIMEOUT_CEILING_SECONDS)
        self.silence = SilenceWatch(self.loop, self.streams, lambda: self.last_heard)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.token is not None and self.transport is not None:
            self.transport.write(codec.tcp_message(0, codec.KIND_AUTH, self.token.encode()))

    def data_received(self, data: bytes) -> None:
        self.last_heard = self.loop.time()
        streams = self.streams
        loads = orjson.loads
        for stream_id, kind, payload in self.messages(data):
            frames = streams.get(stream_id)
            if frames is not None and kind == codec.KIND_FRAME:
                frames.push(loads(payload))

    async def next_frame(
        self, frames: StreamFrames, first: bool, instance_id: int
    ) -> dict[str, Any] | None:
        """The stream's next frame; `InstanceGoneError` once nothing at all came from the worker
        for the acknowledgement timeout (the `first` frame) or the idle timeout. While other
        streams' frames keep arriving the worker is alive (a loaded caller may take a while to
        read what is queued ahead of this stream's)."""
        if frames.items:
            return frames.items.popleft()
        silence = self.ack_timeout.seconds() if first else IDLE_TIMEOUT_SECONDS
        if not await self.silence.wait(frames, silence):
            if first:
                self.ack_timeout.timed_out()
            raise InstanceGoneError(instance_id, "stopped responding")
        return frames.items.popleft()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.silence.close()
        for frames in self.streams.values():
            frames.push(_CLOSED)

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def open_stream(self) -> tuple[int, StreamFrames]:
        stream_id = next(self._ids) & 0xFFFFFFFF
        frames = self.streams[stream_id] = StreamFrames()
        return stream_id, frames

    def send(self, stream_id: int, kind: int, payload: bytes) -> None:
        """Send a request to the worker at once; queue a stop (`write_soon`).

        A request is on the way to its time to first token: queued, it would wait for the end
        of the turn, behind every other stream's tokens and every other new request of a burst
        (under 64 streams that was 10 to 23 ms at the median, docs/performance.md). One write per
        request costs little; stops, which come many at a time, still share writes.
        """
        if self.transport is None:
            return
        message = codec.tcp_message(stream_id, kind, payload)
        if kind == codec.KIND_REQUEST:
            self.write_now(message)
        else:
            self.write_soon(message)


class TcpClient:
    """This process's connections to workers, one per worker address, opened on first use."""

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE, token: str | None = None):
        self.max_message = max_message
        self.token = token
        self._connections: dict[tuple[str, int], _CallerConnection] = {}
        self._connecting: dict[tuple[str, int], asyncio.Future[_CallerConnection]] = {}

    async def _connection(self, host: str, port: int) -> _CallerConnection:
        key = (host, port)
        connection = self._connections.get(key)
        if connection is not None and connection.open:
            return connection
        pending = self._connecting.get(key)
        if pending is None:  # one connect per worker, however many requests wait for it
            pending = asyncio.ensure_future(self._connect(host, port))
            self._connecting[key] = pending
            pending.add_done_callback(lambda _: self._connecting.pop(key, None))
        return await asyncio.shield(pending)

    async def _connect(self, host: str, port: int) -> _CallerConnection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(_CONNECT_TIMEOUT_SECONDS):
            _, connection = await loop.create_connection(
                lambda: _CallerConnection(self.max_message, self.token), host, port
            )
        self._connections[(host, port)] = connection
        return connection

    async def stream(
        self, address: str, instance_id: int, request: Any, context: Context
    ) -> AsyncIterator[Any]:
        """Send one request to the worker at `address` and yield its responses until its final
        frame; the errors are `stream_request`'s (over NATS)."""
        host, port, subject = split_address(address)
        payload = codec.tcp_request(subject, context.id(), request)
        if len(payload) > self.max_message:
            raise PayloadTooLargeError(len(payload), self.max_message)
        try:
            connection = await self._connection(host, port)
        except (OSError, TimeoutError) as e:
            raise InstanceGoneError(
                instance_id, f"is not listening at {host}:{port} ({type(e).__name__})"
            ) from None
        stream_id, frames = connection.open_stream()
        check = ResponseFrames(instance_id)
        try:
            connection.send(stream_id, codec.KIND_REQUEST, payload)
            sent_at = connection.loop.time()
            first = True
            stop_sent = False
            while True:
                items = frames.items
                frame = (
                    items.popleft()
                    if items
                    else await connection.next_frame(frames, first, instance_id)
                )
                if first:
                    first = False
                    if frame is not None:
                        connection.ack_timeout.observe(connection.loop.time() - sent_at)
                if frame is None:  # _CLOSED: the connection is gone
                    raise InstanceGoneError(instance_id, "closed its connection")
                if not stop_sent and context.is_stopped():
                    # The caller stopped the request but still reads: the worker stops and ends
                    # the stream with its final frame (checked per frame, as over NATS).
                    stop_sent = True
                    connection.send(stream_id, codec.KIND_CONTROL, _stop_kind(context))
                item = check.accept(frame)
                if item is HEARTBEAT:
                    continue
                if item is FINAL:
                    return
                yield item
        finally:
            if not check.done and not _ended(frames):
                # The caller stopped reading, or the worker went quiet: it stops generating.
                connection.send(stream_id, codec.KIND_CONTROL, _stop_kind(context))
            connection.streams.pop(stream_id, None)

    async def close(self) -> None:
        for connection in list(self._connections.values()):
            if connection.transport is not None:
                connection.transport.close()
        self._connections.clear()


def _ended(frames: StreamFrames) -> bool:
    """Whether the stream's last frame (final or error) has come, unread: the worker is done
    with it, and a stop would only cost a write (as when the caller stops at the same token
    as the worker, at `max_tokens`)."""
    return any(
        frame is not None and ("final" in frame or "error" in frame) for frame in frames.items
    )


def _stop_kind(context: Context) -> bytes:
    return b"kill" if context.is_killed() else b"stop"
