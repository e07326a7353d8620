"""The response builder's chunks and bodies match the published response models."""

from __future__ import annotations

import orjson
import pytest

from dynamo.llm.chunks import Answer, ResponseBuilder
from dynamo.llm.logprobs import Candidate, TokenLogprob
from dynamo.llm.parsers import ToolCallDelta
from dynamo.llm.pipeline import StreamDelta
from dynamo.llm.protocols.responses import (
    ChatCompletionChunk,
    ChatCompletionResponse,
    CompletionResponse,
)


def lp(token: str) -> list[TokenLogprob]:
    return [TokenLogprob(1, token, -0.5, list(token.encode()), [Candidate(token, -0.5, [])])]


DELTAS = [
    StreamDelta("", None, 5, 1, reasoning="think"),
    StreamDelta("Hi", None, 5, 2, logprobs=lp("Hi")),
    StreamDelta("", None, 5, 3, tool_calls=[ToolCallDelta(0, "call_1", "f", "")]),
    StreamDelta("", None, 5, 3, index=1, logprobs=lp("x")),
    StreamDelta(
        "",
        "tool_calls",
        5,
        4,
        tool_calls=[ToolCallDelta(0, arguments='{"a": 1}')],
        cached_tokens=2,
        reasoning_tokens=1,
    ),
    StreamDelta("x", "length", 5, 5, index=1, stop_reason=None),
]


def test_chat_chunks_and_body_validate():
    builder = ResponseBuilder("chat", "r1", "m", "fp_1")
    for d in DELTAS:
        ChatCompletionChunk.model_validate(builder.chunk(d))
    usage = ChatCompletionChunk.model_validate(builder.usage_chunk(DELTAS[-1])).usage
    assert usage.total_tokens == 10
    answer = Answer()
    for d in DELTAS:
        answer.add(d)
    body = ChatCompletionResponse.model_validate(builder.full(answer))
    first, second = body.choices
    assert first.message.reasoning_content == "think"
    assert first.message.tool_calls[0].function.arguments == '{"a": 1}'
    assert first.finish_reason == "tool_calls" and second.finish_reason == "length"
    assert [e.token for e in first.logprobs.content] == ["Hi"]
    assert body.system_fingerprint == "fp_1"


def test_completion_chunks_and_body_validate():
    builder = ResponseBuilder("completion", "r1", "m")
    deltas = [
        StreamDelta("ab", None, 2, 1, logprobs=lp("ab")),
        StreamDelta("c", "stop", 2, 2, logprobs=lp("c")),
    ]
    chunks = [CompletionResponse.model_validate(builder.chunk(d)) for d in deltas]
    assert chunks[1].choices[0].logprobs.text_offset == [2]
    answer = Answer()
    for d in deltas:
        answer.add(d)
    body = CompletionResponse.model_validate(builder.full(answer))
    assert body.choices[0].text == "abc"
    assert body.choices[0].logprobs.text_offset == [0, 2]


def _sse_of(builder: ResponseBuilder, delta: StreamDelta) -> bytes:
    return b"data: " + orjson.dumps(builder.chunk(delta)) + b"\n\n"


PLAIN = [
    StreamDelta("Hello", None, 5, 1),
    StreamDelta(' "quoted" \\ \n and ünïcödé 🎉', None, 5, 2),
    StreamDelta("", None, 5, 3),
    StreamDelta("x", None, 5, 4, index=1),
    StreamDelta("y", None, 5, 5, index=1),
    StreamDelta("</s>\u2028", None, 5, 6),
    StreamDelta("end", "stop", 5, 7, stop_reason="</s>"),
]


@pytest.mark.parametrize("kind", ["chat", "completion"])
@pytest.mark.parametrize("fingerprint", [None, "fp_1"])
@pytest.mark.parametrize("continuous", [False, True])
def test_sse_is_byte_for_byte_the_chunk(kind, fingerprint, continuous):
    """The pre-encoded path (plain text in the middle of a choice) and the dict path give the
    exact bytes `orjson.dumps(chunk)` gives, for every kind of piece, in stream order (the
    builder's state, roles sent and completion offsets, advances the same on both)."""
    fast = ResponseBuilder(kind, "r1", "m", fingerprint, continuous)
    slow = ResponseBuilder(kind, "r1", "m", fingerprint, continuous)
    slow.created = fast.created
    for delta in [*PLAIN, *DELTAS]:
        if kind == "completion" and (delta.reasoning or delta.tool_calls):
            continue
        assert fast.sse(delta) == _sse_of(slow, delta)


def test_sse_frames_are_built_once_per_choice():
    builder = ResponseBuilder("chat", "r1", "m")
    builder.sse(StreamDelta("a", None, 1, 1))  # the choice's first piece carries the role
    builder.sse(StreamDelta("b", None, 1, 2))
    builder.sse(StreamDelta("c", None, 1, 3))
    assert list(builder._frames) == [0]
