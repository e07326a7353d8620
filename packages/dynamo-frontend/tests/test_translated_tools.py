"""Tools and reasoning through the Responses and Anthropic APIs: the chat pipeline's own parsers
(hermes tool calls, qwen3 reasoning) find them in the model's text, and each API returns them in
its own shape, streamed and not, through the real SDKs."""

from __future__ import annotations

import json

import anthropic
import httpx2
import openai
import pytest

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
def state(translated):
    return translated.app_state(anthropic_api=True)[0]


@pytest.fixture
def oai(translated, state):
    return openai.AsyncOpenAI(
        base_url="http://test/v1",
        api_key="x",
        http_client=translated.http_client(state),
        max_retries=0,
    )


@pytest.fixture
def claude(translated, state):
    http = translated.http_client(state, httpx2)
    return anthropic.AsyncAnthropic(
        base_url="http://test", api_key="x", http_client=http, max_retries=0
    )


async def test_responses_function_call_and_reasoning(oai):
    tools = [{"type": "function", **WEATHER_TOOL}]
    response = await oai.responses.create(model="tooled", input="weather in Paris?", tools=tools)
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "message", "function_call"]
    assert response.output[0].content[0].text == "The user wants weather."
    assert response.output_text == "Let me check."
    call = response.output[2]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}

    async with oai.responses.stream(
        model="tooled", input="weather in Paris?", tools=tools
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    assert [item.type for item in final.output] == kinds
    assert any(e.type == "response.function_call_arguments.delta" for e in events)
    assert any(e.type == "response.reasoning_text.delta" for e in events)

    # A client that stores nothing gets the reasoning sealed, to send back as it is.
    sealed = await oai.responses.create(
        model="tooled",
        input="weather in Paris?",
        tools=tools,
        store=False,
        include=["reasoning.encrypted_content"],
    )
    reasoning_item = sealed.output[0].model_dump(exclude_none=True)
    assert reasoning_item["encrypted_content"]
    reasoning_item.pop("content")
    again = await oai.responses.create(
        model="report",
        input=[
            {"role": "user", "content": "q"},
            reasoning_item,
            {"role": "assistant", "content": "a"},
        ],
    )
    assert json.loads(again.output_text)[1]["reasoning_content"] == "The user wants weather."

    # The call's result goes back as a function_call_output item, continuing the conversation.
    follow = await oai.responses.create(
        model="report",
        previous_response_id=response.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    sent = json.loads(follow.output_text)
    assert sent[-2]["tool_calls"][0]["id"] == call.call_id
    assert sent[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}


async def test_responses_tools_need_a_parser(oai):
    with pytest.raises(openai.BadRequestError) as e:
        await oai.responses.create(
            model="echo", input="x", tools=[{"type": "function", **WEATHER_TOOL}]
        )
    assert e.value.body["param"] == "tools"


async def test_anthropic_tool_use_and_thinking(claude):
    tools = [
        {
            "name": WEATHER_TOOL["name"],
            "description": WEATHER_TOOL["description"],
            "input_schema": WEATHER_TOOL["parameters"],
        }
    ]
    messages = [{"role": "user", "content": "weather in Paris?"}]
    message = await claude.messages.create(
        model="tooled", max_tokens=100, messages=messages, tools=tools
    )
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[0].thinking == "The user wants weather."
    assert message.content[2].name == "get_weather" and message.content[2].input == {
        "city": "Paris"
    }
    assert message.stop_reason == "tool_use"

    async with claude.messages.stream(
        model="tooled", max_tokens=100, messages=messages, tools=tools
    ) as stream:
        final = await stream.get_final_message()
    assert final.content[2].input == {"city": "Paris"} and final.stop_reason == "tool_use"
