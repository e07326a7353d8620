"""Chat chunks → Responses API events and response objects, checked against the openai SDK's own
types (strict pydantic validation) and its stream accumulator."""

from __future__ import annotations

import typing

import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from dynamo.frontend.http.responses.events import ResponseStream
from dynamo.frontend.http.responses.protocol import ResponseObject, ResponsesRequest
from dynamo.frontend.http.responses.protocol import ResponseStreamEvent as EventShape

#: The SDK's event class for each event type, to validate each event against its own model.
EVENT_TYPES = {
    typing.get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}


def validate(event):
    return EVENT_TYPES[event["type"]].model_validate(event)


def chunk(content=None, reasoning=None, tool_calls=None, finish=None, stop_reason=None):
    delta = {}
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        delta["reasoning_content"] = reasoning
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    if finish:
        choice["stop_reason"] = stop_reason
    return {"object": "chat.completion.chunk", "choices": [choice]}


def usage(prompt, completion):
    return {
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def run(chunks, **kw):
    req = ResponsesRequest.model_validate({"model": "m", "input": "hi", **kw})
    builder = ResponseStream(req, "m", lambda text: len(text.split()))
    events = builder.start()
    for c in chunks:
        events += builder.on_chunk(c)
    events += builder.finish()
    return builder, events


def test_text_stream_events_and_response():
    builder, events = run([chunk("Hel"), chunk("lo"), chunk("", finish="stop"), usage(3, 2)])
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for e in events:
        validate(e)
    final = Response.model_validate(builder.response())
    ResponseObject.model_validate(builder.response())  # what /openapi.json publishes
    for e in events:
        EventShape.model_validate(e)
    assert final.output_text == "Hello" and final.status == "completed"
    assert final.usage.input_tokens == 3 and final.usage.output_tokens == 2
    assert events[-1]["response"] == builder.response()


def test_reasoning_then_text_then_tool_calls():
    call0 = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "get", "arguments": '{"ci'},
    }
    call0b = {"index": 0, "function": {"arguments": 'ty":"Paris"}'}}
    call1 = {
        "index": 1,
        "id": "call_b",
        "type": "function",
        "function": {"name": "put", "arguments": "{}"},
    }
    builder, events = run(
        [
            chunk(reasoning="Let me "),
            chunk(reasoning="think"),
            chunk("Calling."),
            chunk(tool_calls=[call0]),
            chunk(tool_calls=[call0b, call1]),
            chunk(finish="tool_calls"),
            usage(5, 9),
        ]
    )
    for e in events:
        validate(e)
    final = Response.model_validate(builder.response())
    assert [item.type for item in final.output] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    assert final.output[0].content[0].text == "Let me think"
    assert final.output[1].content[0].text == "Calling."
    assert (final.output[2].call_id, final.output[2].name, final.output[2].arguments) == (
        "call_a",
        "get",
        '{"city":"Paris"}',
    )
    assert (final.output[3].call_id, final.output[3].arguments) == ("call_b", "{}")
    assert final.usage.output_tokens_details.reasoning_tokens == 3
    dones = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [d["arguments"] for d in dones] == ['{"city":"Paris"}', "{}"]


def test_the_sdk_accumulates_our_stream():
    """The openai SDK's `responses.stream` state machine accepts our events in order and ends
    with the same response."""
    from openai._models import construct_type
    from openai.lib.streaming.responses._responses import ResponseStreamState

    call = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "get", "arguments": "{}"},
    }
    _, events = run(
        [
            chunk(reasoning="hm"),
            chunk("Hi"),
            chunk(tool_calls=[call]),
            chunk(finish="tool_calls"),
            usage(1, 3),
        ]
    )
    state = ResponseStreamState(input_tools=[], text_format=openai.omit)
    for e in events:
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=e))
    final = state._completed_response
    assert final is not None and final.output_text == "Hi"
    assert final.output[2].name == "get"


def test_length_limit_is_incomplete():
    builder, events = run(
        [chunk("ab"), chunk("", finish="length"), usage(1, 2)], max_output_tokens=2
    )
    assert events[-1]["type"] == "response.incomplete"
    final = Response.model_validate(builder.response())
    assert final.status == "incomplete" and final.incomplete_details.reason == "max_output_tokens"


def test_failure_events():
    req = ResponsesRequest.model_validate({"model": "m", "input": "hi"})
    builder = ResponseStream(req, "m", len)
    builder.start()
    builder.on_chunk(chunk("part"))
    events = builder.fail({"message": "boom", "type": "engine_error", "param": None, "code": None})
    assert [e["type"] for e in events] == ["error", "response.failed"]
    for e in events:
        validate(e)
    assert events[0]["code"] == "engine_error"
    assert events[1]["response"]["error"] == {"code": "server_error", "message": "boom"}


@pytest.mark.parametrize(
    "fmt",
    [
        {"type": "json_object"},
        {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": True},
    ],
)
def test_text_format_is_echoed(fmt):
    builder, _ = run([chunk("{}", finish="stop")], text={"format": fmt})
    assert Response.model_validate(builder.response()).text.format.type == fmt["type"]
