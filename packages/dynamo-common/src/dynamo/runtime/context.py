"""The per-request context: identity and cancellation, shared by the frontend and every engine.

An engine polls `is_stopped()` between tokens (or awaits `stopped()`); the frontend calls
`stop_generating()` when the client goes away or a stop string is hit. `kill()` is the harder
form: the engine should drop the request without a final message.
"""

from __future__ import annotations

import asyncio
import uuid


class Context:
    """Cancellation state for one request. Cheap to create; safe to share between tasks."""

    __slots__ = ("_id", "_killed", "_stopped")

    def __init__(self, request_id: str | None = None) -> None:
        self._id = request_id or uuid.uuid4().hex
        self._stopped: asyncio.Event | None = None
        self._killed = False

    def id(self) -> str:
        """The request id (upstream spells it as a method)."""
        return self._id

    @property
    def request_id(self) -> str:
        return self._id

    def _event(self) -> asyncio.Event:
        if self._stopped is None:
            self._stopped = asyncio.Event()
        return self._stopped

    def stop_generating(self) -> None:
        """Ask the engine to stop; it should finish with `cancelled` (or just stop yielding)."""
        self._event().set()

    def kill(self) -> None:
        """Stop at once: the consumer no longer reads anything."""
        self._killed = True
        self._event().set()

    def is_stopped(self) -> bool:
        return self._stopped is not None and self._stopped.is_set()

    def is_killed(self) -> bool:
        return self._killed

    async def stopped(self) -> None:
        """Wait until the request is stopped or killed."""
        await self._event().wait()

    async def async_killed_or_stopped(self) -> bool:
        """Upstream's name for `stopped()`; returns True once stopped."""
        await self.stopped()
        return True
