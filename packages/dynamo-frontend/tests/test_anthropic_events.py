"""Chat chunks → Anthropic message events and message objects, checked against the anthropic
SDK's own types and its stream accumulator."""

from __future__ import annotations

from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from dynamo.frontend.http.anthropic.errors import anthropic_error
from dynamo.frontend.http.anthropic.events import MessageStream
from dynamo.frontend.http.anthropic.protocol import (
    AnthropicError,
    MessageObject,
    MessageStreamEvent,
)
from dynamo.llm.errors import ModelNotFoundError, ServiceUnavailableError

EVENT = TypeAdapter(RawMessageStreamEvent)


def chunk(content=None, reasoning=None, tool_calls=None, finish=None, stop_reason=None):
    delta = {
        k: v
        for k, v in (
            ("content", content),
            ("reasoning_content", reasoning),
            ("tool_calls", tool_calls),
        )
        if v is not None
    }
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    if finish:
        choice["stop_reason"] = stop_reason
    return {"choices": [choice]}


def usage(prompt, completion):
    return {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}


def run(chunks, stops=None):
    builder = MessageStream("m", stops, 4)
    events = builder.start()
    for c in chunks:
        events += builder.on_chunk(c)
    events += builder.finish()
    for e in events:
        EVENT.validate_python(e)
    return builder, events


def test_text_message():
    builder, events = run(
        [chunk("Hel"), chunk("lo"), chunk("", finish="stop", stop_reason=2), usage(4, 2)]
    )
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    message = Message.model_validate(builder.message())
    MessageObject.model_validate(builder.message())  # what /openapi.json publishes
    for e in events:
        MessageStreamEvent.model_validate(e)
    assert message.content[0].text == "Hello"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 2)


def test_stop_sequence_and_max_tokens():
    builder, _ = run([chunk("a"), chunk("", finish="stop", stop_reason="END")], stops=["END"])
    assert builder.message()["stop_reason"] == "stop_sequence"
    assert builder.message()["stop_sequence"] == "END"
    builder, events = run([chunk("a", finish="length")])
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"


def test_thinking_text_and_tool_use():
    calls = [
        [{"index": 0, "id": "call_1", "function": {"name": "get", "arguments": '{"city": '}}],
        [{"index": 0, "function": {"arguments": '"Paris"}'}}],
    ]
    builder, events = run(
        [
            chunk(reasoning="hmm"),
            chunk("Checking."),
            chunk(tool_calls=calls[0]),
            chunk(tool_calls=calls[1]),
            chunk(finish="tool_calls"),
            usage(4, 7),
        ]
    )
    message = Message.model_validate(builder.message())
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[0].thinking == "hmm"
    assert message.content[2].input == {"city": "Paris"} and message.content[2].id == "call_1"
    assert message.stop_reason == "tool_use"

    from anthropic.lib.streaming._messages import accumulate_event

    snapshot, buffers = None, {}
    for e in events:
        snapshot = accumulate_event(
            event=EVENT.validate_python(e), current_snapshot=snapshot, json_bufs=buffers
        )
    assert snapshot.content[2].input == {"city": "Paris"}
    assert snapshot.content[1].text == "Checking."


def test_errors_in_anthropic_shape():
    status, body = anthropic_error(ModelNotFoundError("x"))
    assert status == 404 and body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "The model 'x' does not exist"},
    }
    AnthropicError.model_validate(body)
    status, body = anthropic_error(ServiceUnavailableError("busy"))
    assert status == 503 and body["error"]["type"] == "overloaded_error"
