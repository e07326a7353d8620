"""Anthropic Messages requests → the chat request the pipeline runs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dynamo.frontend.http.anthropic.convert import to_chat_request
from dynamo.frontend.http.anthropic.protocol import MessagesRequest
from dynamo.llm.errors import InvalidRequestError


def request(**kw) -> MessagesRequest:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    return MessagesRequest.model_validate({**body, **kw})


def messages(chat):
    return [m.model_dump(exclude_none=True) for m in chat.messages]


def test_system_text_and_sampling():
    chat = to_chat_request(
        request(
            system=[{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
            stop_sequences=["END"],
            temperature=0.2,
            top_p=0.5,
            top_k=4,
            metadata={"user_id": "u1"},
        )
    )
    assert messages(chat) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert chat.max_completion_tokens == 10 and chat.stop == ["END"]
    assert (chat.temperature, chat.top_p, chat.top_k, chat.user) == (0.2, 0.5, 4, "u1")


def test_tool_use_and_tool_result_blocks():
    chat = to_chat_request(
        request(
            messages=[
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "need a tool", "signature": "s"},
                        {"type": "text", "text": "Let me check."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get",
                            "input": {"city": "Paris"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "sunny"}],
                        },
                        {"type": "text", "text": "and tomorrow?"},
                    ],
                },
            ],
            tools=[{"name": "get", "description": "weather", "input_schema": {"type": "object"}}],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
        )
    )
    assert messages(chat)[1:] == [
        {
            "role": "assistant",
            "content": "Let me check.",
            "reasoning_content": "need a tool",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "user", "content": "and tomorrow?"},
    ]
    body = chat.model_dump(exclude_none=True)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get", "parameters": {"type": "object"}, "description": "weather"},
        }
    ]
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice(choice, expected):
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    chat = to_chat_request(request(tools=tools, tool_choice=choice))
    assert chat.model_dump(exclude_none=True)["tool_choice"] == expected


def test_thinking_switch():
    chat = to_chat_request(request(thinking={"type": "disabled"}))
    assert chat.chat_template_kwargs == {"enable_thinking": False}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            "messages.0.content.0.type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_use", "id": "x", "name": "f", "input": {}}],
                    }
                ]
            },
            "messages.0.content.0.type",
        ),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0"),
        ({"system": [{"type": "image"}]}, "system.0.type"),
    ],
)
def test_refused_content(body, param):
    with pytest.raises(InvalidRequestError) as e:
        to_chat_request(request(**body))
    assert e.value.param == param


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"mcp_servers": []}, "mcp_servers"),
        ({"unknown": 1}, "unknown"),
        ({"messages": [{"role": "system", "content": "x"}]}, "role"),
    ],
)
def test_refused_fields(body, needle):
    with pytest.raises(ValidationError, match=needle):
        request(**body)
