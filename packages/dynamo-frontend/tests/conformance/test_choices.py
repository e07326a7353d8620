"""n, best_of and lists of prompts; completions' default max_tokens and echo."""

from __future__ import annotations

from dynamo.testing.openai_api import HI, refused


async def test_chat_n_choices_unary_and_stream(client):
    resp = await client.chat.completions.create(model="mock", messages=HI, max_tokens=3, n=3)
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert all(c.finish_reason == "length" for c in resp.choices)
    one = await client.chat.completions.create(model="mock", messages=HI, max_tokens=3)
    assert resp.usage.completion_tokens == 9
    assert resp.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counts once
    stream = await client.chat.completions.create(
        model="mock",
        messages=HI,
        max_tokens=3,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [ch async for ch in stream]
    finished = {c.index for ch in chunks for c in ch.choices if c.finish_reason}
    assert finished == {0, 1}
    roles = [c.index for ch in chunks for c in ch.choices if c.delta.role == "assistant"]
    assert sorted(roles) == [0, 1]
    assert chunks[-1].usage.completion_tokens == 6


async def test_completions_list_of_prompts_and_n(client):
    resp = await client.completions.create(
        model="echo",
        prompt=["alpha beta", "gamma"],
        n=2,
        max_tokens=50,
        extra_body={"ignore_eos": True},
    )
    assert [c.index for c in resp.choices] == [0, 1, 2, 3]
    texts = [c.text for c in resp.choices]
    assert texts[0] == texts[1] and texts[2] == texts[3] and texts[0] != texts[2]
    assert "alpha" in texts[0] and "gamma" in texts[2]


async def test_completions_best_of_returns_n(client):
    resp = await client.completions.create(
        model="mock", prompt="Hello there", max_tokens=3, n=1, best_of=3
    )
    assert len(resp.choices) == 1 and resp.choices[0].logprobs is None
    assert resp.usage.completion_tokens == 9  # every candidate was generated
    await refused(client.completions.create(model="echo", prompt="x", n=1, best_of=2), "best_of")


async def test_completions_default_max_tokens_is_16(client):
    resp = await client.completions.create(
        model="echo", prompt="one two three " * 20, extra_body={"ignore_eos": True}
    )
    assert resp.usage.completion_tokens == 16 and resp.choices[0].finish_reason == "length"


async def test_completions_echo(client):
    resp = await client.completions.create(
        model="echo", prompt="Hi you", max_tokens=2, echo=True, extra_body={"ignore_eos": True}
    )
    assert resp.choices[0].text.startswith("Hi you")
