"""Several choices merged into one stream: indices, request-wide token counts, errors, echo."""

import asyncio

import pytest

from dynamo.llm.fanout import Choice, child_context, echo_prompt, merge_choices
from dynamo.llm.logprobs import TokenLogprob
from dynamo.llm.stream_delta import StreamDelta
from dynamo.runtime.context import Context


def stream(prompt_tokens: int, n: int, fail: bool = False):
    async def gen():
        for i in range(1, n + 1):
            await asyncio.sleep(0)
            yield StreamDelta("x", "length" if i == n else None, prompt_tokens, i)
        if fail:
            raise RuntimeError("boom")

    return gen


async def test_indices_and_totals():
    choices = [
        Choice(0, 0, stream(10, 2)),
        Choice(1, 0, stream(10, 3)),
        Choice(2, 1, stream(7, 1)),
    ]
    deltas = [d async for d in merge_choices(choices)]
    assert sorted(d.index for d in deltas) == [0, 0, 1, 1, 1, 2]
    last = deltas[-1]
    assert last.completion_tokens == 6
    assert last.prompt_tokens == 17  # each prompt once


async def test_an_error_in_one_choice_ends_the_stream():
    started = asyncio.Event()

    async def slow():
        started.set()
        await asyncio.sleep(30)
        yield StreamDelta("never")

    with pytest.raises(RuntimeError, match="boom"):
        async for _ in merge_choices([Choice(0, 0, slow), Choice(1, 0, stream(1, 1, fail=True))]):
            pass
    assert started.is_set()


async def test_child_context_follows_its_parent():
    parent = Context("req")
    child, watcher = child_context(parent, 2)
    assert child.id() == "req-2"
    parent.kill()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert child.is_stopped() and child.is_killed()
    watcher.cancel()


async def test_echo_puts_the_prompt_and_its_logprobs_first():
    entry = TokenLogprob(1, "Hi", None, [72, 105])

    async def gen():
        yield StreamDelta(
            " there", logprobs=[TokenLogprob(2, " there", -1.0, [])], prompt_logprobs=[entry]
        )
        yield StreamDelta("!", "stop")

    out = [d async for d in echo_prompt(gen(), "Hi")]
    assert [d.text for d in out] == ["Hi there", "!"]
    assert [e.token for e in out[0].logprobs] == ["Hi", " there"]
    assert out[0].prompt_logprobs is None
