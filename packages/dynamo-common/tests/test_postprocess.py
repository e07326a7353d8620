"""Chat answers after detokenization: reasoning and tool calls split out, finish reasons."""

import json

import pytest

from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.postprocess import OutputParsers, check_tools, parse_chat_stream, parsers_for
from dynamo.llm.protocols.openai import ChatCompletionRequest
from dynamo.llm.stream_delta import StreamDelta

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def chat(**kw) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], **kw}
    )


async def run(pieces: list[str], request, parsers) -> list[StreamDelta]:
    async def stream():
        for i, p in enumerate(pieces):
            yield StreamDelta(p, "stop" if i == len(pieces) - 1 else None, 3, i + 1)

    return [
        d async for d in parse_chat_stream(stream(), request, parsers, lambda t: len(t.split()))
    ]


async def test_reasoning_then_tool_call():
    pieces = [
        "<think>plan",
        " it</think>",
        "ok<tool_",
        'call>{"name": "f", "arguments": {}}</tool_call>',
    ]
    out = await run(pieces, chat(tools=[TOOL]), OutputParsers("hermes", "qwen3"))
    assert "".join(d.reasoning for d in out) == "plan it"
    assert "".join(d.text for d in out) == "ok"
    assert [c.name for d in out for c in d.tool_calls or () if c.name] == ["f"]
    assert out[-1].finish_reason == "tool_calls"
    assert out[-1].reasoning_tokens == 2


async def test_forced_named_tool_becomes_a_call():
    req = chat(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "f"}})
    out = await run(['{"a"', ": 1}"], req, OutputParsers())
    [call] = [c for d in out for c in d.tool_calls or ()]
    assert (call.name, json.loads(call.arguments)) == ("f", {"a": 1})
    assert all(d.text == "" for d in out)


async def test_forced_call_cut_short_gives_the_text_back():
    req = chat(tools=[TOOL], tool_choice="required")
    out = await run(['[{"name": "f", "param'], req, OutputParsers())
    assert out[-1].text == '[{"name": "f", "param' and out[-1].finish_reason == "stop"


async def test_no_parsers_pass_deltas_through():
    out = await run(["a", "b"], chat(), OutputParsers())
    assert [d.text for d in out] == ["a", "b"] and out[-1].reasoning_tokens is None


def test_tools_need_a_parser():
    with pytest.raises(InvalidRequestError) as e:
        check_tools(chat(tools=[TOOL]), OutputParsers())
    assert e.value.param == "tools"
    check_tools(chat(tools=[TOOL], tool_choice="none"), OutputParsers())
    check_tools(chat(tools=[TOOL]), OutputParsers("hermes"))


def test_parser_choice_precedence():
    card = ModelDeploymentCard(display_name="m", chat_template="{{ '<tool_call>' }}")
    assert parsers_for(card).tool_call_parser == "hermes"
    card.runtime_config["tool_call_parser"] = "mistral"
    card.runtime_config["reasoning_parser"] = "qwen3"
    assert parsers_for(card) == OutputParsers("mistral", "qwen3")
    assert parsers_for(card, "pythonic", "deepseek_r1") == OutputParsers("pythonic", "deepseek_r1")
    with pytest.raises(ValueError):
        OutputParsers("nope")
