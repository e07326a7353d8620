"""LibraryEngine: the request reading, cancellation, abort and shutdown scaffolding shared by the
SGLang and TensorRT-LLM engines, driven through a small in-memory library of our own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

from dynamo.llm.errors import EngineFailedError, InvalidRequestError
from dynamo.llm.generation_options import GenerationOptions
from dynamo.llm.kv.engine_publishers import EnginePublishers
from dynamo.llm.library_engine import LibraryEngine, LibraryRun
from dynamo.runtime.context import Context


class Library:
    """Streams one token per `step` seconds until `max_tokens`; a request it does not know yet
    drops an abort (SGLang's behaviour, which `abort_retry_s` is for)."""

    def __init__(self, step: float = 0.0, registers_after: int = 0) -> None:
        self.step = step
        self.registers_after = registers_after
        self.aborts = 0
        self.aborted = False
        self.shut_down = False

    async def stream(self, prompt: list[int], max_tokens: int) -> AsyncIterator[int]:
        for i in range(max_tokens):
            await asyncio.sleep(self.step)
            if self.aborted:
                return
            yield prompt[0] + i

    def abort(self) -> None:
        self.aborts += 1
        if self.aborts > self.registers_after:
            self.aborted = True


class Run(LibraryRun):
    def __init__(self, library: Library, opts: GenerationOptions) -> None:
        self.library = library
        self.max_tokens = opts.max_tokens or 4
        self.prompt = opts.prompt
        self.sent = 0
        self._finished = False

    async def outputs(self) -> AsyncGenerator[Any, None]:
        async for token in self.library.stream(self.prompt, self.max_tokens):
            yield token
        yield None  # the end: finished, or cancelled when aborted

    def delta(self, output: Any, stopped: bool) -> dict[str, Any] | None:
        if output is None:
            self._finished = True
            reason = "cancelled" if self.library.aborted else "length"
            return {"token_ids": [], "finish_reason": reason}
        self.sent += 1
        return {"token_ids": [output]}

    @property
    def finished(self) -> bool:
        return self._finished

    def abort(self) -> None:
        self.library.abort()


class Feeds:
    def __init__(self, publishers: EnginePublishers) -> None:
        self.publishers = publishers
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class ToyEngine(LibraryEngine):
    library_name = "Toy"
    supported_fields = frozenset({"logprobs"})
    abort_retry_s = 0.01

    def __init__(self, library: Library) -> None:
        super().__init__()
        self.library = library
        self.prepared: list[Any] = []
        self.order: list[str] = []

    @classmethod
    async def start(cls, config: Any) -> ToyEngine:
        raise NotImplementedError  # made directly by the tests

    def prepare(self, opts: GenerationOptions, visible_stops: tuple[int, ...]) -> Any:
        if opts.temperature > 2:
            raise InvalidRequestError("the toy takes temperatures up to 2", param="temperature")
        self.prepared.append(visible_stops)
        return opts.temperature

    async def submit(
        self, opts: GenerationOptions, visible_stops: tuple[int, ...], params: Any, context: Context
    ) -> LibraryRun:
        return Run(self.library, opts)

    async def start_feeds(self, publishers: EnginePublishers) -> Feeds:
        return Feeds(publishers)

    async def shutdown(self) -> None:
        self.order.append("shutdown")
        self.library.shut_down = True


def request(max_tokens: int = 3, **parts: Any) -> dict[str, Any]:
    return {"token_ids": [10, 11], "stop_conditions": {"max_tokens": max_tokens}, **parts}


async def collect(stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [delta async for delta in stream]


async def test_streams_to_the_end_with_the_visible_stops() -> None:
    engine = ToyEngine(Library())
    req = request(stop_conditions={"max_tokens": 3, "stop_token_ids": [7]}, eos_token_ids=[2])
    out = await collect(engine.generate(req, Context()))
    assert out == [
        {"token_ids": [10]},
        {"token_ids": [11]},
        {"token_ids": [12]},
        {"token_ids": [], "finish_reason": "length"},
    ]
    assert engine.prepared == [(7,)]  # the client's stop ids, not the EOS
    assert engine.library.aborts == 0


async def test_a_stopped_request_never_reaches_the_library() -> None:
    engine = ToyEngine(Library())
    stopped = Context()
    stopped.stop_generating()
    assert await collect(engine.generate(request(), stopped)) == [
        {"token_ids": [], "finish_reason": "cancelled"}
    ]
    killed = Context()
    killed.kill()
    assert await collect(engine.generate(request(), killed)) == []
    assert engine.library.aborts == 0


async def test_a_stop_aborts_again_until_the_library_has_the_request() -> None:
    library = Library(step=0.01, registers_after=2)  # the first two aborts are dropped
    engine = ToyEngine(library)
    context = Context()
    stream = engine.generate(request(max_tokens=10_000), context)
    assert (await anext(stream))["token_ids"] == [10]
    context.stop_generating()
    rest = await collect(stream)
    assert rest[-1] == {"token_ids": [], "finish_reason": "cancelled"}
    assert library.aborted and library.aborts >= 3


async def test_a_killed_request_ends_without_a_last_delta() -> None:
    library = Library(step=0.01)
    engine = ToyEngine(library)
    context = Context()
    stream = engine.generate(request(max_tokens=10_000), context)
    await anext(stream)
    context.kill()
    rest = await collect(stream)
    assert all("finish_reason" not in d for d in rest)
    assert library.aborted


async def test_a_consumer_that_leaves_aborts_the_request() -> None:
    library = Library(step=0.01)
    engine = ToyEngine(library)
    stream = engine.generate(request(max_tokens=10_000), Context())
    await anext(stream)
    await stream.aclose()
    assert library.aborts == 1


async def test_requests_are_read_once_and_refused_by_name() -> None:
    engine = ToyEngine(Library())
    with pytest.raises(InvalidRequestError) as e:
        await collect(engine.generate(request(output_options={"prompt_logprobs": 1}), Context()))
    assert e.value.param == "prompt_logprobs"
    with pytest.raises(InvalidRequestError) as e:
        await collect(engine.generate(request(sampling_options={"temperature": 3}), Context()))
    assert e.value.param == "temperature"
    out = await collect(engine.generate(request(output_options={"logprobs": 1}), Context()))
    assert out[-1]["finish_reason"] == "length"


async def test_close_stops_the_feeds_then_the_library_once() -> None:
    engine = ToyEngine(Library())
    publishers = EnginePublishers()
    await engine.attach(publishers)
    assert isinstance(engine.feeds, Feeds) and engine.feeds.publishers is publishers
    with pytest.raises(RuntimeError, match="already has publishers"):
        await engine.attach(publishers)
    feeds = engine.feeds
    await engine.close()
    await engine.close()
    assert feeds.closed and engine.library.shut_down and engine.order == ["shutdown"]
    with pytest.raises(EngineFailedError, match="the Toy engine is shut down"):
        await collect(engine.generate(request(), Context()))


def test_start_failures_are_one_line_naming_the_library() -> None:
    error = ToyEngine.start_failed(ValueError("bad\nsecond line"))
    assert str(error) == "Toy could not start: bad"
