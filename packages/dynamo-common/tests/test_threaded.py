"""`stream_from_thread`: a blocking producer's items reach asyncio in order, its failure is an
`EngineFailedError` naming the engine, and a consumer that stops early stops the producer and
waits for its thread (so the next request on a one-thread executor does not queue behind it)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dynamo.llm.errors import EngineFailedError
from dynamo.llm.threaded import stream_from_thread


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True)


async def test_items_arrive_in_order_from_the_executors_thread(executor):
    threads: set[int] = set()

    def produce(push, abort):
        threads.add(threading.get_ident())
        for i in range(100):
            push(i)

    got = [item async for item in stream_from_thread(executor, produce, "counter")]
    assert got == list(range(100))
    assert threads and threading.get_ident() not in threads


async def test_a_failing_producer_ends_the_stream_with_an_engine_error(executor, caplog):
    def produce(push, abort):
        push("first")
        raise ValueError("the library broke")

    got = []
    with pytest.raises(EngineFailedError, match="flaky failed: the library broke"):
        async for item in stream_from_thread(executor, produce, "flaky"):
            got.append(item)
    assert got == ["first"]
    assert "flaky failed while generating" in caplog.text


async def test_stopping_early_aborts_the_producer_and_waits_for_its_thread(executor):
    finished = threading.Event()
    pushed: list[int] = []

    def produce(push, abort):
        try:
            for i in range(10_000):
                if abort.is_set():
                    return
                pushed.append(i)
                push(i)
                time.sleep(0.001)
        finally:
            finished.set()

    stream = stream_from_thread(executor, produce, "long")
    assert await anext(stream) == 0
    await stream.aclose()
    # aclose returned only once the thread was done, and it quit long before the end.
    assert finished.is_set()
    assert len(pushed) < 10_000
