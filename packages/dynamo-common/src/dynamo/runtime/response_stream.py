"""One response stream, whatever carries it (NATS or TCP): the worker's side (run the handler,
send numbered frames, heartbeat while it is quiet) and the caller's (check each frame in order,
turn error frames into exceptions). The request planes only move the bytes."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from dynamo.runtime import codec
from dynamo.runtime.context import Context
from dynamo.runtime.errors import InstanceGoneError, RemoteError

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 0.5
# A stream with no frame for this long means the worker is gone (it heartbeats twice a second).
IDLE_TIMEOUT_SECONDS = 2.0
# A worker acknowledges a request at once (its first frame), so a new request waits this long at
# most for a worker that died or froze before another one is tried.
FIRST_FRAME_TIMEOUT_SECONDS = 1.0

#: The error of a stream this worker ended itself (shutting down): the caller may migrate it.
WORKER_STOPPED = "the worker stopped: it is shutting down (request migration resumes the stream)"

Handler = Callable[..., AsyncIterator[Any]]
#: Sends one encoded frame; the flag marks frames a plane may use to check that the caller is
#: still there (NATS sends them with a probe reply subject; TCP sees a lost caller at once).
SendFrame = Callable[[bytes, bool], Awaitable[None]]


def takes_context(handler: Handler) -> bool:
    """Handlers are `(request)` or `(request, context)` async generators, as upstream allows."""
    try:
        params = [
            p
            for p in inspect.signature(handler).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return True
    return len(params) >= 2


def error_frame_of(seq: int, e: Exception) -> bytes:
    """The error frame for a handler's exception: its message, and the `status_code`,
    `error_type`, `code` and `param` it carries (the LLM layer's request errors carry all four;
    the runtime reads them by name and knows nothing of their classes)."""
    status = getattr(e, "status_code", None)
    error_type, code, param = (getattr(e, name, None) for name in ("error_type", "code", "param"))
    return codec.error_frame(
        seq,
        getattr(e, "message", None) or str(e) or type(e).__name__,
        status if isinstance(status, int) else None,
        error_type=error_type if isinstance(error_type, str) else None,
        code=code if isinstance(code, str | int) else None,
        param=param if isinstance(param, str) else None,
    )


async def serve_stream(
    handler: Handler, with_context: bool, data: Any, context: Context, send: SendFrame, name: str
) -> None:
    """Run one request's handler and send its frames: the ack (a heartbeat at once), one frame
    per item, heartbeats while it is quiet, then `final`, or an error frame. `name` (the endpoint)
    is for the log."""
    clock = asyncio.get_running_loop().time
    seq = 0
    last_sent = last_probe = clock()

    async def heartbeat() -> None:
        nonlocal seq, last_probe
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            if clock() - last_sent >= HEARTBEAT_SECONDS:
                seq += 1
                last_probe = clock()
                await send(codec.heartbeat_frame(seq), True)

    beat = asyncio.create_task(heartbeat())
    stream = handler(data, context) if with_context else handler(data)
    try:
        seq += 1
        await send(codec.heartbeat_frame(seq), False)  # the ack: "I have it"
        async for item in stream:
            if context.is_killed():
                break
            seq += 1
            last_sent = clock()
            # About twice a second a data frame doubles as the probe.
            probe = last_sent - last_probe >= HEARTBEAT_SECONDS
            if probe:
                last_probe = last_sent
            await send(codec.data_frame(seq, item), probe)
        seq += 1
        await send(codec.final_frame(seq), False)
    except asyncio.CancelledError:
        if not context.is_killed():
            # Stopped by this worker (its shutdown grace period is over), not by the caller:
            # say so now rather than leave the caller to notice the silence. The 503 hands
            # the stream over: the caller's migration resumes it on another worker.
            seq += 1
            with contextlib.suppress(Exception):
                await send(codec.error_frame(seq, WORKER_STOPPED, 503), False)
        raise
    except Exception as e:
        status = getattr(e, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            log.info("request %s rejected: %s", context.id(), e)  # the caller's mistake
        else:
            log.exception("handler failed on %s", name)
        seq += 1
        with contextlib.suppress(Exception):
            await send(error_frame_of(seq, e), False)
    finally:
        beat.cancel()
        aclose = getattr(stream, "aclose", None)  # handlers may return any async iterator
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


async def finish_tasks(tasks: list[asyncio.Task], timeout: float | None, name: str) -> None:  # noqa: ASYNC109
    """Wait for in-flight requests; those still running after `timeout` seconds (None: no
    limit; 0: none) are cancelled, which ends their streams with an error frame."""
    if not tasks:
        return
    log.info("finishing %d in-flight request(s) on %s", len(tasks), name)
    _, unfinished = await asyncio.wait(tasks, timeout=timeout) if timeout != 0 else ((), tasks)
    for task in unfinished:
        task.cancel()
    if unfinished:
        await asyncio.wait(unfinished, timeout=1)


#: What `ResponseFrames.accept` returns for a frame that carries no item.
HEARTBEAT = object()
FINAL = object()


class ResponseFrames:
    """The caller's check of one stream: frames in order, each one's meaning."""

    __slots__ = ("done", "expected", "instance_id", "streamed")

    def __init__(self, instance_id: int):
        self.instance_id = instance_id
        self.expected = 1
        self.streamed = False
        #: The stream ended (final or error frame): the worker needs no stop message.
        self.done = False

    def accept(self, frame: dict[str, Any]) -> Any:
        """The frame's item, or `HEARTBEAT`, or `FINAL`; an error frame raises `RemoteError`
        (`InstanceGoneError` for a 503 before any item: another worker may take the request),
        a missing frame `InstanceGoneError`."""
        if frame.get("seq") != self.expected:
            raise InstanceGoneError(
                self.instance_id,
                f"lost response frames (got {frame.get('seq')}, expected {self.expected})",
            )
        self.expected += 1
        if "data" in frame:
            self.streamed = True
            return frame["data"]
        if frame.get("final"):
            self.done = True
            return FINAL
        if "error" in frame:
            self.done = True
            if frame.get("status") == 503 and not self.streamed:
                # Shutting down (or stopped) before it sent anything: another worker can
                # take the request, as if this one had not been listening.
                raise InstanceGoneError(self.instance_id, str(frame["error"]))
            raise RemoteError(
                frame["error"],
                frame.get("status"),
                error_type=frame.get("type"),
                code=frame.get("code"),
                param=frame.get("param"),
            )
        return HEARTBEAT
