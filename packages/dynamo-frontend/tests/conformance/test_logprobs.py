"""logprobs in OpenAI's shapes, unary and streamed, for chat and completions (the mocker's)."""

from __future__ import annotations

from dynamo.testing.openai_api import HI


def check_chat_logprobs(entries, top: int) -> None:
    assert entries
    for e in entries:
        assert isinstance(e.token, str) and e.logprob <= 0
        assert bytes(e.bytes).decode("utf-8", errors="replace") == e.token
        assert len(e.top_logprobs) == top
        assert [t.logprob for t in e.top_logprobs] == sorted(
            (t.logprob for t in e.top_logprobs), reverse=True
        )


async def test_chat_logprobs_unary_and_stream(client):
    resp = await client.chat.completions.create(
        model="mock", messages=HI, max_tokens=5, logprobs=True, top_logprobs=2
    )
    entries = resp.choices[0].logprobs.content
    assert len(entries) == resp.usage.completion_tokens == 5
    check_chat_logprobs(entries, 2)
    assert "".join(e.token for e in entries) == resp.choices[0].message.content
    stream = await client.chat.completions.create(
        model="mock", messages=HI, max_tokens=5, logprobs=True, stream=True
    )
    streamed = [e async for ch in stream for e in (ch.choices[0].logprobs.content or [])]
    assert len(streamed) == 5
    check_chat_logprobs(streamed, 0)


async def test_completion_logprobs_unary_and_stream(client):
    resp = await client.completions.create(
        model="mock", prompt="Hello there", max_tokens=4, logprobs=3
    )
    lp = resp.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4
    assert all(len(t) <= 3 for t in lp.top_logprobs)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(4)]
    stream = await client.completions.create(
        model="mock", prompt="Hello there", max_tokens=4, logprobs=1, stream=True
    )
    tokens = [
        t async for ch in stream if ch.choices[0].logprobs for t in ch.choices[0].logprobs.tokens
    ]
    assert len(tokens) == 4
