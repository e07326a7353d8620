"""Several choices from one request (`n`, `best_of`, a list of prompts), merged into one stream.

Each choice runs as its own engine request, concurrently; their deltas are interleaved as they
come, each tagged with its choice `index`, and the token counts on every delta are the totals of
the whole request so far (a prompt counted once however many choices it has, as OpenAI and
vLLM count it). An error in any choice ends the whole stream, and the others are stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from dynamo.llm.stream_delta import StreamDelta
from dynamo.runtime.context import Context


@dataclass(frozen=True, slots=True)
class Choice:
    """One choice to run: its index, which prompt it answers, and how to start its stream."""

    index: int
    prompt: int
    start: Callable[[], AsyncIterator[StreamDelta]]


_DONE = object()


async def merge_choices(choices: list[Choice]) -> AsyncIterator[StreamDelta]:
    """Run `choices` concurrently; yield their deltas, indexed, with request-wide token counts."""
    queue: asyncio.Queue[tuple[Choice, object]] = asyncio.Queue()
    completion: dict[int, int] = {}
    prompts: dict[int, int] = {}
    cached: dict[int, int] = {}
    reasoning: dict[int, int] = {}

    async def pump(choice: Choice) -> None:
        stream = choice.start()
        try:
            async for delta in stream:
                await queue.put((choice, delta))
            await queue.put((choice, _DONE))
        except BaseException as e:  # handed to the consumer, which re-raises it
            await queue.put((choice, e))
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    tasks = [asyncio.ensure_future(pump(c)) for c in choices]
    running = len(tasks)
    try:
        while running:
            choice, item = await queue.get()
            if item is _DONE:
                running -= 1
                continue
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, StreamDelta)
            completion[choice.index] = item.completion_tokens
            prompts[choice.prompt] = item.prompt_tokens
            if item.cached_tokens is not None:
                cached[choice.prompt] = item.cached_tokens
            if item.reasoning_tokens is not None:
                reasoning[choice.index] = item.reasoning_tokens
            yield dataclasses.replace(
                item,
                index=choice.index,
                prompt_tokens=sum(prompts.values()),
                completion_tokens=sum(completion.values()),
                cached_tokens=sum(cached.values()) if cached else None,
                reasoning_tokens=sum(reasoning.values()) if reasoning else None,
            )
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


def child_context(parent: Context, index: int) -> tuple[Context, asyncio.Future[None]]:
    """A context for choice `index` of `parent`'s request: its own id (engines key their state by
    it), stopped or killed when the parent is. Cancel the returned watcher when done."""
    child = Context(f"{parent.id()}-{index}")

    async def follow() -> None:
        await parent.stopped()
        if parent.is_killed():
            child.kill()
        else:
            child.stop_generating()

    return child, asyncio.ensure_future(follow())
