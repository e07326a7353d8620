"""Responses API input items and options → the chat request the pipeline runs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dynamo.frontend.http.responses.convert import (
    items_to_messages,
    seal_reasoning,
    to_chat_request,
)
from dynamo.frontend.http.responses.protocol import ResponsesRequest
from dynamo.llm.errors import InvalidRequestError


def request(**kw) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", "input": "hi", **kw})


def test_string_input_and_instructions():
    chat, conversation = to_chat_request(request(instructions="Be brief."), [])
    assert [m.model_dump(exclude_none=True) for m in chat.messages] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    # Instructions are not carried to the next turn (OpenAI's rule).
    assert conversation == [{"role": "user", "content": "hi"}]


def test_item_list_roles_parts_tools_and_reasoning():
    items = [
        {"role": "developer", "content": "rules"},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}],
        },
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": "think"}],
        },
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"x":1}'},
        {"type": "function_call", "call_id": "call_2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "done"}]},
    ]
    assert items_to_messages(items) == [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "ab"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "think",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"x":1}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "assistant", "content": "done"},
    ]


def test_null_means_the_default():
    assert request(store=None, stream=None).store is True
    assert request(store=None, stream=None).stream is False


def test_history_comes_first():
    history = [{"role": "user", "content": "one"}, {"role": "assistant", "content": "1"}]
    chat, conversation = to_chat_request(request(input="two", instructions="sys"), history)
    assert [m.content for m in chat.messages] == ["sys", "one", "1", "two"]
    assert [m["content"] for m in conversation] == ["one", "1", "two"]


def test_options_map_onto_chat():
    chat, _ = to_chat_request(
        request(
            max_output_tokens=7,
            temperature=0.5,
            top_p=0.9,
            tools=[
                {
                    "type": "function",
                    "name": "f",
                    "description": "d",
                    "parameters": {"type": "object"},
                    "strict": True,
                }
            ],
            tool_choice={"type": "function", "name": "f"},
            parallel_tool_calls=False,
            text={
                "format": {
                    "type": "json_schema",
                    "name": "s",
                    "schema": {"type": "object"},
                    "strict": True,
                }
            },
            reasoning={"effort": "low"},
        ),
        [],
    )
    assert chat.max_completion_tokens == 7 and chat.temperature == 0.5 and chat.top_p == 0.9
    body = chat.model_dump(exclude_none=True, by_alias=True)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "f",
                "description": "d",
                "parameters": {"type": "object"},
                "strict": True,
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["parallel_tool_calls"] is False
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": True},
    }
    assert body["reasoning_effort"] == "low"
    chat, _ = to_chat_request(request(text={"format": {"type": "json_object"}}), [])
    assert chat.model_dump(exclude_none=True, by_alias=True)["response_format"] == {
        "type": "json_object"
    }


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"background": True}, "background"),
        ({"truncation": "auto"}, "truncation"),
        ({"include": ["file_search_call.results"]}, "include"),
        ({"include": ["reasoning.encrypted_content", "x"]}, "include: x"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"made_up": 1}, "made_up"),
        ({"input": ""}, "input"),
        ({"text": {"format": {"type": "json_schema"}}}, "json_schema"),
    ],
)
def test_refused_fields(body, needle):
    with pytest.raises(ValidationError, match=needle):
        request(**body)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"reasoning": {"summary": "detailed"}}, "reasoning.summary"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        ({"reasoning": {"effort": "xhigh"}}, "reasoning.effort"),
    ],
)
def test_refused_content(body, param):
    with pytest.raises(InvalidRequestError) as e:
        to_chat_request(request(**body), [])
    assert e.value.param == param


def test_sealed_reasoning_comes_back():
    sealed = seal_reasoning("thought about it")
    items = [
        {"role": "user", "content": "q"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": sealed},
        {"role": "assistant", "content": "a"},
    ]
    assert items_to_messages(items)[1] == {
        "role": "assistant",
        "content": "a",
        "reasoning_content": "thought about it",
    }
    items[1]["encrypted_content"] = "someone else's"
    with pytest.raises(InvalidRequestError) as e:
        items_to_messages(items)
    assert e.value.param == "input[1].encrypted_content"
