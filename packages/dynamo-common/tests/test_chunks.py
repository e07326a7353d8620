"""The response builder's chunks and bodies match the published response models."""

from __future__ import annotations

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
