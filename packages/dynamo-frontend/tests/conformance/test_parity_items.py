"""The small parity items: request id and system fingerprint, stop_token_ids, cached tokens,
skip_special_tokens, continuous usage stats, and nvext annotations as named SSE events."""

from __future__ import annotations

import json

import pytest

from dynamo.testing.openai_api import HI, raw_echo, refused


async def test_request_id_and_system_fingerprint(client):
    raw = await client.chat.completions.with_raw_response.create(
        model="mock", messages=HI, max_tokens=1, extra_headers={"x-request-id": "req-42"}
    )
    assert raw.headers["x-request-id"] == "req-42"
    resp = raw.parse()
    assert resp.id == "chatcmpl-req-42"
    assert resp.system_fingerprint and resp.system_fingerprint.startswith("fp_")


async def test_stop_token_ids(client, card):
    tok = card.tokenizer()
    ids = tok.encode("one two three four", add_special_tokens=False).ids
    resp = await client.completions.create(
        model="echo",
        prompt="one two three four",
        max_tokens=10,
        extra_body={"stop_token_ids": [ids[2]], "ignore_eos": True},
    )
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].text == tok.decode(ids[:3])


async def test_cached_tokens_reported_by_the_engine(client):
    long = [{"role": "user", "content": "A long shared system prompt for caching. " * 20}]
    first = await client.chat.completions.create(model="mock", messages=long, max_tokens=2)
    again = await client.chat.completions.create(model="mock", messages=long, max_tokens=2)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert 0 < again.usage.prompt_tokens_details.cached_tokens < again.usage.prompt_tokens


async def test_skip_special_tokens(client):
    text = "<|im_start|>user hi<|im_end|>"
    kept = await client.chat.completions.create(model="echo", **raw_echo(text))
    assert kept.choices[0].message.content == text
    skipped = await client.chat.completions.create(
        model="echo", **raw_echo(text, extra_body={"skip_special_tokens": True})
    )
    assert "<|im_start|>" not in skipped.choices[0].message.content
    assert "hi" in skipped.choices[0].message.content


async def test_continuous_usage_stats(client):
    stream = await client.chat.completions.create(
        model="mock",
        messages=HI,
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"stream_options": {"include_usage": True, "continuous_usage_stats": True}},
    )
    chunks = [ch async for ch in stream]
    counts = [ch.usage.completion_tokens for ch in chunks]
    assert counts == sorted(counts) and counts[-1] == 3
    assert all(ch.usage is not None for ch in chunks)


async def test_annotations_are_named_sse_events(client, card):
    body = {
        "model": "echo",
        "stream": True,
        "max_tokens": 2,
        "messages": HI,
        "nvext": {"annotations": ["formatted_prompt", "token_ids"]},
    }
    http = client._client
    async with http.stream("POST", "http://t/v1/chat/completions", json=body) as r:
        text = (await r.aread()).decode()
    events = text.split("\n\n")
    assert events[0].startswith("event: formatted_prompt\n: ")
    assert "<|im_start|>user" in json.loads(events[0].split("\n: ", 1)[1])
    ids = json.loads(events[1].removeprefix("event: token_ids\n: "))
    assert ids == card.tokenizer().encode(json.loads(events[0].split("\n: ", 1)[1])).ids
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[2:] if e.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)


@pytest.mark.parametrize(
    ("nvext", "stream"), [({"annotations": ["token_ids"]}, False), ({"annotations": ["x"]}, True)]
)
async def test_annotations_refused_unary_or_unknown(client, nvext, stream):
    await refused(
        client.chat.completions.create(
            model="echo", messages=HI, stream=stream, extra_body={"nvext": nvext}
        ),
        "nvext.annotations",
    )
