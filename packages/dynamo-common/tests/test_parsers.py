"""Tool-call and reasoning parsers fed golden transcripts whole, a character at a time, in random
chunks, and token by token through a byte-level tokenizer (markup and multi-byte characters
split across tokens)."""

import json
import random
from pathlib import Path

import pytest

from dynamo.llm.decoder import Decoder
from dynamo.llm.parsers import (
    detect_tool_call_parser,
    forced_calls,
    merge_calls,
    reasoning_parser,
    tool_call_parser,
)
from dynamo.llm.protocols.openai import ChatCompletionRequest

GOLDEN = Path(__file__).parent / "golden"
TOOL_CASES = json.loads((GOLDEN / "tool_calls.json").read_text(encoding="utf-8"))
REASONING_CASES = json.loads((GOLDEN / "reasoning.json").read_text(encoding="utf-8"))


def chunkings(text: str, tokenizer):
    yield "whole", [text]
    yield "chars", list(text)
    rng = random.Random(7)
    for n in range(3):
        pieces, i = [], 0
        while i < len(text):
            k = rng.randint(1, 9)
            pieces.append(text[i : i + k])
            i += k
        yield f"random{n}", pieces
    # One token at a time through the real decoder, bytes split mid-character.
    ids = tokenizer.encode(text).ids
    decoder = Decoder(tokenizer)
    pieces = [decoder.step([t]).text for t in ids] + [decoder.finish()]
    assert "".join(pieces) == text
    yield "byte-tokens", pieces


def run_tool_parser(name: str, pieces: list[str]):
    parser = tool_call_parser(name)
    content, deltas = "", []
    for piece in pieces:
        out = parser.feed(piece)
        content += out.content
        deltas += out.calls
    out = parser.finish()
    return content + out.content, deltas + out.calls


@pytest.mark.parametrize("case", TOOL_CASES, ids=lambda c: c["name"])
def test_tool_call_golden(case, byte_tokenizer):
    for how, pieces in chunkings(case["text"], byte_tokenizer):
        content, deltas = run_tool_parser(case["parser"], pieces)
        assert content == case["content"], how
        calls = merge_calls(deltas)
        assert [(c.name, json.loads(c.arguments)) for c in calls] == [
            tuple(c) for c in case["calls"]
        ], how
        assert [c.index for c in calls] == list(range(len(calls)))
        assert all(c.id for c in calls)
        # OpenAI's incremental shape: each call's first delta names it, arguments come later.
        firsts = {}
        for d in deltas:
            firsts.setdefault(d.index, d)
        assert all(d.id and d.name and d.arguments == "" for d in firsts.values()), how


def test_markup_never_reaches_content_before_the_block_is_known():
    parser = tool_call_parser("hermes")
    seen = ""
    for ch in "ok <tool_call>":
        seen += parser.feed(ch).content
    assert seen == "ok "


def test_name_first_then_arguments_as_they_stream():
    parser = tool_call_parser("hermes")
    out = parser.feed('<tool_call>{"name": "get_weather", "arguments": {"ci')
    assert [(c.name, c.arguments) for c in out.calls] == [("get_weather", ""), (None, '{"ci')]
    out = parser.feed('ty": "Pa}ris"}')
    assert [(c.id, c.name, c.arguments) for c in out.calls] == [(None, None, 'ty": "Pa}ris"}')]
    out = parser.feed("}</tool_call>")  # the call's own closing brace is not an argument
    assert out.calls == [] and out.content == ""
    assert parser.finish().calls == []


def test_arguments_stream_in_many_fragments_that_join_exactly():
    text = (
        '<tool_call>{"name": "f", "arguments": '
        '{"q": "a \\"b\\" {c}", "n": [1, {"x": 2}]}}</tool_call>'
    )
    parser = tool_call_parser("hermes")
    fragments = [c.arguments for ch in text for c in parser.feed(ch).calls if c.name is None]
    assert len(fragments) > 10
    assert json.loads("".join(fragments)) == {"q": 'a "b" {c}', "n": [1, {"x": 2}]}


def test_a_streamed_call_that_turns_out_malformed_is_given_back():
    parser = tool_call_parser("hermes")
    parser.feed('<tool_call>{"name": "f", "arguments": {"a": 1}, oops}')
    out = parser.feed("</tool_call>")
    assert out.content.startswith("<tool_call>") and out.calls == []


def test_plain_text_streams_without_delay():
    parser = tool_call_parser("hermes")
    assert parser.feed("Hello world").content == "Hello world"
    parser = tool_call_parser("llama3_json")
    assert parser.feed("Hello").content == "Hello"


@pytest.mark.parametrize("case", REASONING_CASES, ids=lambda c: c["name"])
def test_reasoning_golden(case, byte_tokenizer):
    for how, pieces in chunkings(case["text"], byte_tokenizer):
        parser = reasoning_parser(case["parser"])
        reasoning = content = ""
        for piece in pieces:
            out = parser.feed(piece)
            reasoning += out.reasoning
            content += out.content
        out = parser.finish()
        assert (reasoning + out.reasoning, content + out.content) == (
            case["reasoning"],
            case["content"],
        ), how


def test_unknown_parser_names():
    with pytest.raises(ValueError, match="hermes"):
        tool_call_parser("nope")
    with pytest.raises(ValueError, match="qwen3"):
        reasoning_parser("nope")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% for t in tools %}<tool_call>{{ t }}</tool_call>{% endfor %}", "hermes"),
        ("[AVAILABLE_TOOLS] ... [TOOL_CALLS]", "mistral"),
        ("<|python_tag|>{{ tool_call }}", "llama3_json"),
        ("<|python_start|>", "pythonic"),
        ("{{ messages }}", None),
        ("<tool_call> and [TOOL_CALLS]", None),
        (None, None),
    ],
)
def test_detect_from_template(template, expected):
    assert detect_tool_call_parser(template) == expected


def test_forced_calls_named_and_required():
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
        }
    )
    [call] = forced_calls('{"a": 1}', req.tool_choice)
    assert (call.name, json.loads(call.arguments)) == ("f", {"a": 1})
    calls = forced_calls('[{"name": "f", "parameters": {"b": 2}}]', "required")
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("f", {"b": 2})]
