"""Streaming from a blocking engine API: run it on a thread, hand its items to asyncio.

Engines whose libraries block (llama-cpp-python's token loop, mistral.rs's stream iterator) call
`stream_from_thread`: the producer runs on the engine's executor and calls `push(item)` per item;
the async side yields them in order. When the consumer stops early (client gone, local stop
string), `abort` is set so the producer can quit within one item, and the generator waits for the
thread to finish, so a one-thread executor keeps requests strictly one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any

from dynamo.llm.errors import EngineFailedError

log = logging.getLogger(__name__)

Push = Callable[[Any], None]
Producer = Callable[[Push, threading.Event], None]

_END = object()


async def stream_from_thread(
    executor: Executor, produce: Producer, engine: str
) -> AsyncIterator[Any]:
    """Yield what `produce(push, abort)` pushes on `executor`; an exception it raises ends the
    stream as an `EngineFailedError` naming `engine`."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    abort = threading.Event()

    def push(item: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def run() -> None:
        try:
            produce(push, abort)
        except Exception as e:  # reported to the caller as an engine error
            log.exception("%s failed while generating", engine)
            push(e)
        finally:
            push(_END)

    job = loop.run_in_executor(executor, run)
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise EngineFailedError(f"{engine} failed: {item}")
            yield item
    finally:
        abort.set()
        # The producer notices within one item; waiting keeps the executor's order meaningful.
        if not job.done():
            await asyncio.shield(job)
