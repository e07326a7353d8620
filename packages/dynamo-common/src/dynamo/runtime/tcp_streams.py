"""The caller's side of the streams multiplexed on one TCP request-plane connection: each
stream's frames as they arrive, and one silence watch per connection.

A stream's reader waits for its next frame many times per second (once per token). An
`asyncio.Queue` read under `asyncio.timeout_at` schedules and cancels a timer on every wait,
which cost more than the rest of the frame's hand-off. Here a wait is one future, and the
connection keeps one timer for all its streams, set to the earliest moment one of them could
have been silent too long; it rarely fires, since frames keep arriving. A worker is still found
silent by the same bounds: nothing at all on the connection for the stream's allowance (the
acknowledgement timeout for a first frame, the idle timeout after), counted from when the wait
began or from the connection's last byte, whichever is later.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

#: A check may run this much before a deadline (timers are coarse) and still count it as due.
_SLACK_SECONDS = 0.001


class StreamFrames:
    """One stream's decoded frames not yet read, and the reader waiting for the next one."""

    __slots__ = ("items", "silence", "since", "waiter")

    def __init__(self) -> None:
        self.items: deque[dict[str, Any] | None] = deque()
        self.waiter: asyncio.Future[None] | None = None
        #: When the current wait began, and how much silence it allows (loop time, seconds).
        self.since = 0.0
        self.silence = 0.0

    def push(self, frame: dict[str, Any] | None) -> None:
        self.items.append(frame)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)


class SilenceWatch:
    """One timer for every stream of a connection that is waiting for a frame."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        streams: dict[int, StreamFrames],
        last_heard: Callable[[], float],
    ):
        self.loop = loop
        self.streams = streams
        self.last_heard = last_heard
        self._at: float | None = None
        self._handle: asyncio.TimerHandle | None = None

    async def wait(self, frames: StreamFrames, silence: float) -> bool:
        """Wait for `frames`' next frame: True once one is there, False if the connection was
        silent for `silence` seconds (from now or its last byte, whichever is later) first."""
        loop = self.loop
        frames.since = since = loop.time()
        frames.silence = silence
        waiter = frames.waiter = loop.create_future()
        self._check_by(since + silence)
        try:
            await waiter
        finally:
            if frames.waiter is waiter:
                frames.waiter = None
        return bool(frames.items)

    def _check_by(self, deadline: float) -> None:
        if self._at is not None and self._at <= deadline:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._at = deadline
        self._handle = self.loop.call_at(deadline, self._check)

    def _check(self) -> None:
        """Wake the waits that have been silent too long (with no frame: they time out) and
        set the timer for the earliest of the others."""
        self._at = self._handle = None
        now = self.loop.time() + _SLACK_SECONDS
        heard = self.last_heard()
        earliest: float | None = None
        for frames in self.streams.values():
            waiter = frames.waiter
            if waiter is None or waiter.done():
                continue
            deadline = max(frames.since, heard) + frames.silence
            if now >= deadline:
                frames.waiter = None
                waiter.set_result(None)
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._check_by(earliest)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = self._handle = None
