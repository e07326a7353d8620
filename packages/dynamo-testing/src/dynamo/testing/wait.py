"""Waiting for something to happen in a test: poll a condition until it holds, or fail saying what
did not happen. One copy for every package's tests (they each had their own)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(
    condition: Callable[[], T | Awaitable[T]],
    *,
    within: float = 15.0,
    what: str = "the condition",
    interval: float = 0.01,
) -> T:
    """Poll `condition` (a plain or an async callable) on the running loop until it returns a
    true value, and return that value; an `AssertionError` naming `what` after `within` seconds.

    The generous default is a limit for a broken run, not a speed claim: tests never assert
    timings by waiting."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        await asyncio.sleep(interval)


def wait_for(
    condition: Callable[[], T],
    *,
    within: float = 60.0,
    what: str = "the condition",
    interval: float = 0.1,
) -> T:
    """`until` for code outside an event loop (a test driving subprocesses over HTTP): blocks."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        time.sleep(interval)
