"""`/v1/messages` in process (the real app over `httpx.ASGITransport`) with the real `anthropic`
SDK: create, stream, count_tokens, errors in Anthropic's shape, and the flag that turns it on."""

from __future__ import annotations

import json

import anthropic
import httpx2
import pytest

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def served(translated):
    state, reporter = translated.app_state(anthropic_api=True)
    http = translated.http_client(state, httpx2)
    client = anthropic.AsyncAnthropic(
        base_url="http://test", api_key="none", http_client=http, max_retries=0
    )
    return client, reporter


async def test_create(served):
    client, _ = served
    message = await client.messages.create(model="echo", max_tokens=100, messages=MESSAGES)
    assert message.content[0].type == "text" and message.content[0].text == "hello"
    assert message.role == "assistant" and message.model == "echo"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 5


async def test_max_tokens(served):
    client, _ = served
    message = await client.messages.create(model="echo", max_tokens=2, messages=MESSAGES)
    assert message.content[0].text == "he" and message.stop_reason == "max_tokens"


async def test_stream(served):
    client, _ = served
    async with client.messages.stream(
        model="echo", max_tokens=100, messages=[{"role": "user", "content": "héllo"}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "héllo" == final.content[0].text
    assert final.stop_reason == "end_turn"
    raw = [
        e.type
        async for e in await client.messages.create(
            model="echo", max_tokens=9, messages=MESSAGES, stream=True
        )
    ]
    assert raw[0] == "message_start" and raw[-2:] == ["message_delta", "message_stop"]
    assert raw.count("content_block_start") == raw.count("content_block_stop") == 1


async def test_system_tools_and_results_reach_the_chat_pipeline(served):
    client, reporter = served
    await client.messages.create(
        model="report",
        max_tokens=50,
        system="be terse",
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"city": "Paris"}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
            },
        ],
        stop_sequences=["END"],
        extra_body={"temperature": 0.5},  # older clients still send it; newer SDKs cannot
    )
    request = reporter.requests[-1]
    assert request["messages"] == [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {
                        "name": "get",
                        "arguments": json.dumps({"city": "Paris"}, separators=(",", ":")),
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
    ]
    assert request["stop"] == ["END"] and request["temperature"] == 0.5


async def test_errors_are_anthropic_shaped(served):
    client, _ = served
    with pytest.raises(anthropic.NotFoundError) as e:
        await client.messages.create(model="nope", max_tokens=5, messages=MESSAGES)
    assert e.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "The model 'nope' does not exist"},
    }
    with pytest.raises(anthropic.BadRequestError) as e:
        await client.messages.create(
            model="echo",
            max_tokens=5,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}],
                }
            ],
        )
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "image" in e.value.body["error"]["message"]


async def test_error_mid_stream(served):
    client, _ = served
    stream = await client.messages.create(
        model="failing", max_tokens=5, messages=MESSAGES, stream=True
    )
    with pytest.raises(anthropic.APIStatusError) as e:
        async for _ in stream:
            pass
    assert "the engine broke down" in str(e.value)


async def test_off_without_the_flag(translated):
    state, _ = translated.app_state()
    async with translated.http_client(state) as http:
        r = await http.post(
            "/v1/messages", json={"model": "echo", "max_tokens": 5, "messages": MESSAGES}
        )
    assert r.status_code == 404


async def test_api_key_as_anthropic_sends_it(translated):
    """`--api-key`: the anthropic SDK sends its key as `x-api-key`."""
    from dynamo.frontend.http.options import HttpOptions

    state, _ = translated.app_state(anthropic_api=True, options=HttpOptions(api_keys=("sekrit",)))
    http = translated.http_client(state, httpx2)
    for key, works in (("sekrit", True), ("wrong", False)):
        client = anthropic.AsyncAnthropic(
            base_url="http://test", api_key=key, http_client=http, max_retries=0
        )
        if works:
            message = await client.messages.create(model="echo", max_tokens=9, messages=MESSAGES)
            assert message.content[0].text == "hello"
        else:
            with pytest.raises(anthropic.AuthenticationError):
                await client.messages.create(model="echo", max_tokens=9, messages=MESSAGES)
