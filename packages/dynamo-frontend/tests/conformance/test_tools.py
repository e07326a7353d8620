"""Tool calls and reasoning (hermes and qwen3 parsers on echo_core's raw answers): unary and
incremental streamed shapes, tool_choice, parallel_tool_calls, and what is refused without a
parser or guided decoding."""

from __future__ import annotations

import json

from dynamo.testing.openai_api import WEATHER_TOOL, raw_echo, refused

CALL_TEXT = (
    'Checking.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call>'
)


async def test_tool_calls_unary(client):
    resp = await client.chat.completions.create(
        model="echo-tools", tools=[WEATHER_TOOL], **raw_echo(CALL_TEXT)
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Zürich"}


async def test_tool_calls_stream_incremental_shape(client):
    stream = await client.chat.completions.create(
        model="echo-tools", tools=[WEATHER_TOOL], stream=True, **raw_echo(CALL_TEXT)
    )
    content, calls, finish = "", [], None
    async for ch in stream:
        delta = ch.choices[0].delta
        content += delta.content or ""
        calls += delta.tool_calls or []
        finish = ch.choices[0].finish_reason or finish
    assert content == "Checking." and "<tool" not in content
    assert finish == "tool_calls"
    assert calls[0].id and calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == ""
    arguments = "".join(c.function.arguments or "" for c in calls)
    assert json.loads(arguments) == {"city": "Zürich"}


async def test_tool_choice_none_leaves_the_text_alone(client):
    resp = await client.chat.completions.create(
        model="echo-tools", tools=[WEATHER_TOOL], tool_choice="none", **raw_echo(CALL_TEXT)
    )
    assert resp.choices[0].message.tool_calls is None
    assert "<tool_call>" in resp.choices[0].message.content


async def test_parallel_tool_calls_false_keeps_the_first(client):
    two = (
        CALL_TEXT + '<tool_call>{"name": "get_weather", "arguments": {"city": "Bern"}}</tool_call>'
    )
    resp = await client.chat.completions.create(
        model="echo-tools", tools=[WEATHER_TOOL], parallel_tool_calls=False, **raw_echo(two)
    )
    assert len(resp.choices[0].message.tool_calls) == 1
    resp = await client.chat.completions.create(
        model="echo-tools", tools=[WEATHER_TOOL], **raw_echo(two)
    )
    assert len(resp.choices[0].message.tool_calls) == 2


async def test_tools_without_a_parser_are_refused(client):
    await refused(
        client.chat.completions.create(model="echo", tools=[WEATHER_TOOL], **raw_echo("x")),
        "tools",
    )


async def test_forced_tool_choice_needs_guided_decoding(client):
    await refused(
        client.chat.completions.create(
            model="echo-tools", tools=[WEATHER_TOOL], tool_choice="required", **raw_echo("x")
        ),
        "tool_choice",
    )


THINK_TEXT = "<think>The user wants weather.</think>\n\n" + CALL_TEXT


async def test_reasoning_with_tool_calls_unary_and_stream(client):
    resp = await client.chat.completions.create(
        model="echo-tools", tools=[WEATHER_TOOL], **raw_echo(THINK_TEXT)
    )
    message = resp.choices[0].message
    assert message.reasoning_content == "The user wants weather."
    assert message.content == "Checking."
    assert message.tool_calls[0].function.name == "get_weather"
    assert resp.usage.completion_tokens_details.reasoning_tokens > 0
    stream = await client.chat.completions.create(
        model="echo-tools",
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
        **raw_echo(THINK_TEXT),
    )
    reasoning = content = ""
    usage = None
    async for ch in stream:
        usage = ch.usage or usage
        if ch.choices:
            delta = ch.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
    assert (reasoning, content) == ("The user wants weather.", "Checking.")
    assert usage.completion_tokens_details.reasoning_tokens > 0
