"""What `VllmEngine.start` built is closed when the start does not complete (no vLLM: the
engine's `_build` is given a factory in vLLM's place, and `close` touches only what it built).

`start` builds the `AsyncLLM` in a thread, into the engine object itself, and closes the engine
on any failure after that; a start cancelled meanwhile waits for the thread's AsyncLLM (built
either way) so that closing shuts it down rather than leaving its engine core process behind.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from dynamo.engines.vllm._engine import VllmEngine


class Built:
    """In the AsyncLLM's place: counts its shutdowns."""

    def __init__(self) -> None:
        self.shutdowns = 0

    def shutdown(self) -> None:
        self.shutdowns += 1


async def test_a_start_cancelled_while_vllm_is_built_keeps_it_for_close() -> None:
    engine = VllmEngine(llm=None, vllm=None, max_model_len=128)
    built = Built()
    started, release = threading.Event(), threading.Event()

    def factory() -> Built:
        started.set()
        release.wait(10)
        return built

    task = asyncio.ensure_future(engine._build(factory))
    assert await asyncio.to_thread(started.wait, 10)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # waiting for the thread, not gone with the AsyncLLM unowned
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await engine.close()
    assert built.shutdowns == 1


async def test_an_engine_whose_vllm_was_never_built_closes() -> None:
    engine = VllmEngine(llm=None, vllm=None, max_model_len=128)
    await engine.close()
    await engine.close()
