"""Requests over NATS: the worker side (`EndpointServer`) and the caller side (`stream_request`)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from dynamo.runtime import codec
from dynamo.runtime.context import Context
from dynamo.runtime.errors import (
    InstanceGoneError,
    PayloadTooLargeError,
    RequestPlaneDownError,
)
from dynamo.runtime.response_stream import (
    FINAL,
    FIRST_FRAME_TIMEOUT_SECONDS,
    HEARTBEAT,
    HEARTBEAT_SECONDS,
    IDLE_TIMEOUT_SECONDS,
    Handler,
    ResponseFrames,
    finish_tasks,
    serve_stream,
    takes_context,
)

if TYPE_CHECKING:  # nats-py loads only where the NATS plane or NATS is used
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg

log = logging.getLogger(__name__)

# After this long without a frame the caller asks NATS whether the worker still listens (a
# message to its control subject, our inbox as the reply): when its process has died, NATS has
# dropped its subscriptions and answers "no responders" at once, so a SIGKILL is noticed in about
# this time rather than at the idle timeout.
PROBE_AFTER_SECONDS = 0.3

__all__ = [
    "FIRST_FRAME_TIMEOUT_SECONDS",
    "HEARTBEAT_SECONDS",
    "IDLE_TIMEOUT_SECONDS",
    "EndpointServer",
    "Handler",
    "stream_request",
    "takes_context",
]


def control_subject(subject: str) -> str:
    return f"{subject}.control"


class EndpointServer:
    """Serves one instance subject: a task per request, cancellation, graceful drain."""

    def __init__(self, nc: NATS, subject: str, handler: Handler):
        self.nc = nc
        self.subject = subject
        self.handler = handler
        self._with_context = takes_context(handler)
        self._inflight: dict[str, tuple[Context, asyncio.Task]] = {}
        self._subs: list[Any] = []
        self._accepting = True
        # Probe replies: some frames carry a reply subject under this prefix. If the caller's
        # inbox has no subscriber any more (its process died without a stop message), NATS
        # answers "no responders" there and we stop generating for nobody.
        self._probe_prefix = nc.new_inbox()
        self._probes: dict[str, str] = {}  # probe reply subject -> caller's inbox
        self._probe_ids = itertools.count()

    async def start(self) -> None:
        self._subs.append(await self.nc.subscribe(self.subject, cb=self._on_request))
        self._subs.append(
            await self.nc.subscribe(control_subject(self.subject), cb=self._on_control)
        )
        self._subs.append(
            await self.nc.subscribe(f"{self._probe_prefix}.*", cb=self._on_probe_reply)
        )
        # The client only queues SUB; a PING round trip makes the server hold the subscriptions
        # before the caller announces this instance in etcd. Otherwise a client that sees the key
        # at once can get "no responders" from a healthy worker and route around it for seconds.
        # nats-py writes a flush's PING ahead of the commands still queued, so the first round
        # trip only sees the SUBs written; the second PING follows them on the wire.
        await self.nc.flush()
        await self.nc.flush()

    async def _on_request(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            request_id, data = codec.decode_request(msg.data)
        except Exception:
            await self.nc.publish(msg.reply, codec.error_frame(1, "malformed request"))
            return
        if not self._accepting:
            await self.nc.publish(msg.reply, codec.error_frame(1, "worker is shutting down", 503))
            return
        context = Context(request_id)
        inbox = msg.reply
        task = asyncio.create_task(self._serve(inbox, data, context))
        self._inflight[inbox] = (context, task)
        task.add_done_callback(lambda _: self._inflight.pop(inbox, None))

    async def _on_probe_reply(self, msg: Msg) -> None:
        if not (msg.headers and msg.headers.get("Status") == "503"):
            return
        entry = self._inflight.get(self._probes.get(msg.subject, ""))
        if entry is not None:
            log.info("caller of request %s is gone; stopping it", entry[0].id())
            entry[0].kill()
            entry[1].cancel()

    async def _on_control(self, msg: Msg) -> None:
        try:
            body = codec.decode_frame(msg.data)
        except Exception:
            return
        kind = body.get("kind")
        entry = self._inflight.get(body.get("inbox", ""))
        if entry is None or kind == "ping":  # a ping only checks that we still listen
            return
        context, task = entry
        if kind == "kill":
            context.kill()
            task.cancel()
        else:
            context.stop_generating()

    async def _serve(self, inbox: str, data: Any, context: Context) -> None:
        publish = self.nc.publish
        probe = f"{self._probe_prefix}.{next(self._probe_ids)}"
        self._probes[probe] = inbox

        async def send(frame: bytes, probing: bool) -> None:
            await publish(inbox, frame, reply=probe if probing else "")

        try:
            await serve_stream(self.handler, self._with_context, data, context, send, self.subject)
        finally:
            self._probes.pop(probe, None)

    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Stop taking requests and wait for the in-flight ones to finish; those still running
        after `timeout` seconds (None: no limit) end with an error frame."""
        self._accepting = False
        for sub in self._subs[:1]:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        tasks = [task for _, task in self._inflight.values()]
        await finish_tasks(tasks, timeout, self.subject)
        for sub in self._subs[1:]:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


async def stream_request(
    nc: NATS, subject: str, instance_id: int, request: Any, context: Context
) -> AsyncIterator[Any]:
    """Send one request and yield the worker's responses until its final frame.

    Raises `InstanceGoneError` when nobody listens on the subject (before anything was streamed,
    so the caller may retry elsewhere) or when the worker goes quiet mid-stream, and
    `RemoteError` when the worker's handler failed.
    """
    if not nc.is_connected:
        raise RequestPlaneDownError(_server_of(nc))
    inbox = nc.new_inbox()
    # Frames go straight into our queue: `Subscription.next_msg` starts two tasks per message,
    # which is most of the client's cost per token.
    frames: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_frame(msg: Msg) -> None:
        frames.put_nowait(msg)

    sub = await nc.subscribe(inbox, cb=on_frame)
    frames_check = ResponseFrames(instance_id)
    try:
        payload = codec.encode_request(context.id(), request)
        try:
            await nc.publish(subject, payload, reply=inbox)
        except Exception as e:
            from nats.errors import MaxPayloadError

            if isinstance(e, MaxPayloadError):
                raise PayloadTooLargeError(len(payload), nc.max_payload) from None
            raise
        timeout = FIRST_FRAME_TIMEOUT_SECONDS
        stop_sent = False

        async def next_frame(limit: float) -> Msg:
            """The next frame within `limit` seconds, asking NATS after a short silence whether
            the worker still listens (see PROBE_AFTER_SECONDS)."""
            try:
                async with asyncio.timeout(PROBE_AFTER_SECONDS):
                    return await frames.get()
            except TimeoutError:
                pass
            if not nc.is_connected:  # NATS itself is away: no frame can come, say so now
                raise RequestPlaneDownError(_server_of(nc))
            with contextlib.suppress(Exception):
                await nc.publish(
                    control_subject(subject),
                    codec.control(context.id(), inbox, "ping"),
                    reply=inbox,
                )
            try:
                async with asyncio.timeout(limit - PROBE_AFTER_SECONDS):
                    return await frames.get()
            except TimeoutError:
                if not nc.is_connected:  # it is NATS that went away, not the worker
                    raise RequestPlaneDownError(_server_of(nc)) from None
                raise InstanceGoneError(instance_id, "stopped responding") from None

        while True:
            try:
                msg = frames.get_nowait()
            except asyncio.QueueEmpty:
                msg = await next_frame(timeout)
            timeout = IDLE_TIMEOUT_SECONDS
            if not stop_sent and context.is_stopped():
                # The caller stopped the request (stop string, client gone) but still reads:
                # the worker stops and ends the stream with its final frame. Checked per frame
                # (heartbeats included) rather than by a task per request.
                stop_sent = True
                await nc.publish(
                    control_subject(subject),
                    codec.control(context.id(), inbox, "kill" if context.is_killed() else "stop"),
                )
            if msg.headers and msg.headers.get("Status") == "503":
                raise InstanceGoneError(instance_id, "is not listening (no responders)")
            item = frames_check.accept(codec.decode_frame(msg.data))
            if item is HEARTBEAT:
                continue
            if item is FINAL:
                return
            yield item
    finally:
        if not frames_check.done:
            # The caller stopped reading (client disconnect, local stop string) or we failed:
            # tell the worker to stop generating.
            with contextlib.suppress(Exception):
                await nc.publish(
                    control_subject(subject),
                    codec.control(context.id(), inbox, "kill" if context.is_killed() else "stop"),
                )
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def _server_of(nc: NATS) -> str:
    """The NATS server this client talks (or last talked) to, for error messages."""
    uri = getattr(nc.connected_url, "netloc", None) or next(
        (srv.uri.netloc for srv in getattr(nc, "_server_pool", ())), None
    )
    return uri or "the configured server"
