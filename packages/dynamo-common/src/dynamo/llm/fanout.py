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
from functools import partial
from typing import Any, TypeVar

from dynamo.llm.protocols.openai import ChatCompletionRequest, CompletionRequest
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


Req = TypeVar("Req", ChatCompletionRequest, CompletionRequest)


def for_choice(request: Req, i: int, update: dict[str, Any]) -> Req:
    """Choice `i`'s own request: one choice, and its own seed so the choices differ."""
    update = {"n": None, **update}
    if request.seed is not None:
        update["seed"] = request.seed + i
    return request.model_copy(update=update)


def fan_out(
    subs: list[tuple[int, int, Req]],
    one: Callable[[Req, Context], AsyncIterator[StreamDelta]],
    context: Context,
) -> AsyncIterator[StreamDelta]:
    async def run() -> AsyncIterator[StreamDelta]:
        watchers = []
        choices = []
        for index, prompt, req in subs:
            ctx, watcher = child_context(context, index)
            watchers.append(watcher)
            choices.append(Choice(index, prompt, partial(one, req, ctx)))
        try:
            async for delta in merge_choices(choices):
                yield delta
        finally:
            for w in watchers:
                w.cancel()

    return run()


def _total_logprob(deltas: list[StreamDelta]) -> float:
    # Generated tokens always have one (None is only a prompt's first token's).
    return sum(e.logprob or 0.0 for d in deltas for e in d.logprobs or ())


async def echo_prompt(
    stream: AsyncIterator[StreamDelta], prompt: str
) -> AsyncIterator[StreamDelta]:
    """Completions `echo`: the prompt's text (and its tokens' log probabilities, when asked for
    and the engine sent them) ahead of the answer."""
    first = True
    async for delta in stream:
        if first:
            first = False
            logprobs = delta.logprobs
            if delta.prompt_logprobs is not None:
                logprobs = delta.prompt_logprobs + (delta.logprobs or [])
            delta = dataclasses.replace(
                delta, text=prompt + delta.text, logprobs=logprobs, prompt_logprobs=None
            )
        yield delta


async def best_of_choices(
    request: CompletionRequest,
    prompts: list[str | list[int]],
    n: int,
    best_of: int,
    one: Callable[[CompletionRequest, Context], AsyncIterator[StreamDelta]],
    context: Context,
) -> AsyncIterator[StreamDelta]:
    """`best_of` candidates per prompt; the `n` with the highest total log probability are
    returned (not streamable: the best are known only at the end)."""
    keep_logprobs = request.logprobs is not None
    update = {"logprobs": request.logprobs or 0, "best_of": None}
    subs = [
        (p * best_of + j, p, for_choice(request, j, {"prompt": prompt, **update}))
        for p, prompt in enumerate(prompts)
        for j in range(best_of)
    ]
    per_choice: dict[int, list[StreamDelta]] = {}
    last: StreamDelta | None = None
    async for delta in fan_out(subs, one, context):
        per_choice.setdefault(delta.index, []).append(delta)
        last = delta
    if last is None:
        return
    for p in range(len(prompts)):
        candidates = [per_choice.get(p * best_of + j, []) for j in range(best_of)]
        ranked = sorted(candidates, key=_total_logprob, reverse=True)[:n]
        for rank, deltas in enumerate(ranked):
            for d in deltas:
                yield dataclasses.replace(
                    d,
                    index=p * n + rank,
                    logprobs=d.logprobs if keep_logprobs else None,
                    prompt_tokens=last.prompt_tokens,
                    completion_tokens=last.completion_tokens,
                )
