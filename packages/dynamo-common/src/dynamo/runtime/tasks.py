"""Stopping background tasks at shutdown without hanging on one that ignores cancellation."""

from __future__ import annotations

import asyncio


async def stop_tasks(tasks: list[asyncio.Task], grace: float = 2.0) -> None:
    """Cancel tasks and wait for them, but not forever.

    On Python 3.11 `asyncio.wait_for` (inside aetcd and nats-py) can swallow a cancellation that
    races with its own completion, leaving a task running; shutdown must not hang on it.
    """
    for task in tasks:
        task.cancel()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
