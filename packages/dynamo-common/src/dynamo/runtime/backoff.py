"""Exponential back-off for reconnect loops, so a process waiting on etcd or NATS stays quiet."""

from __future__ import annotations

import asyncio
import random


class Backoff:
    """Delays that double from `first` up to `cap`, with a little jitter; `reset()` after a success.

    Jitter keeps a fleet of workers that lost etcd at the same moment from reconnecting in lockstep.
    """

    def __init__(self, first: float = 0.25, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def delay(self) -> float:
        """The next delay, and double the one after it."""
        current = self._next
        self._next = min(self.cap, self._next * 2)
        return current * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._next = self.first

    async def sleep(self) -> None:
        await asyncio.sleep(self.delay())
