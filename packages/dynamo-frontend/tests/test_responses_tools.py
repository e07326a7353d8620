"""Responses tools beyond functions: `custom` (free-form input) tools run through the chat
pipeline's tool-call parsers and come back as `custom_tool_call` items, through the real openai
SDK; hosted and built-in tool types are refused by name. Unit tests of the mapping first."""

from __future__ import annotations

import json

import openai
import pytest

from dynamo.engines.echo import EchoFullEngine
from dynamo.frontend.http.responses.custom_input import CustomInputStream
from dynamo.frontend.http.responses.tools import (
    REFUSED_TOOLS,
    CallNames,
    chat_tool_choice,
    chat_tools,
    custom_arguments,
    custom_input,
)
from dynamo.llm import ModelType
from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.features import Feature
from dynamo.llm.pipeline import OpenAIEngineModel
from dynamo.llm.postprocess import OutputParsers

PATCH = '*** Begin Patch\n*** Add File: a.txt\n+héllo "world"\n*** End Patch'
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Apply a patch."}


def test_a_custom_tool_is_a_function_of_one_string():
    (tool,) = chat_tools([APPLY_PATCH])  # type: ignore[misc]
    assert tool["function"]["name"] == "apply_patch"
    assert tool["function"]["description"] == "Apply a patch."
    assert tool["function"]["parameters"]["required"] == ["input"]
    assert tool["function"]["parameters"]["properties"]["input"]["type"] == "string"
    plain = chat_tools([{"type": "custom", "name": "n", "format": {"type": "text"}}])
    assert plain is not None and "description" not in plain[0]["function"]
    assert CallNames.of([APPLY_PATCH, {"type": "function", "name": "f"}]).custom == {"apply_patch"}


CRM = {
    "type": "namespace",
    "name": "crm",
    "description": "The customer database.",
    "tools": [
        {"type": "function", "name": "lookup", "description": "Find a customer.", "parameters": {}},
        {"type": "custom", "name": "note"},
    ],
}


def test_a_namespaces_tools_are_functions_with_flat_names():
    lookup, note = chat_tools([CRM, {"type": "function", "name": "lookup"}])[:2]  # type: ignore[index]
    assert lookup["function"]["name"] == "crm__lookup"
    assert lookup["function"]["description"] == "The customer database.\n\nFind a customer."
    assert note["function"]["name"] == "crm__note"
    assert note["function"]["parameters"]["required"] == ["input"]
    names = CallNames.of([CRM, APPLY_PATCH])
    assert names.custom == {"crm__note", "apply_patch"}
    assert names.item_fields("crm__lookup") == {"name": "lookup", "namespace": "crm"}
    assert names.item_fields("apply_patch") == {"name": "apply_patch"}


def test_a_custom_calls_input_round_trips():
    assert custom_input(custom_arguments(PATCH)) == PATCH
    # Arguments of another shape are the input as written.
    assert custom_input('{"patch": "x"}') == '{"patch": "x"}'
    assert custom_input("not json") == "not json"


def stream_input(arguments: str, step: int) -> tuple[list[str], CustomInputStream]:
    stream = CustomInputStream()
    pieces = [arguments[i : i + step] for i in range(0, len(arguments), step)]
    return [stream.feed(p) for p in pieces], stream


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 1000])
@pytest.mark.parametrize(
    "arguments",
    [
        custom_arguments(PATCH + " 😀"),
        json.dumps({"input": PATCH + " 😀"}),  # \u escapes, a surrogate pair among them
        json.dumps({"input": PATCH + " 😀"}, indent=2) + " ",
    ],
)
def test_a_custom_calls_input_streams_as_the_arguments_arrive(arguments, step):
    """Split anywhere (inside an escape, between a surrogate pair's halves), the decoded pieces
    add up to the input, and each is whole text as soon as it can be."""
    texts, stream = stream_input(arguments, step)
    assert "".join(texts) == stream.sent == stream.final() == PATCH + " 😀"
    if step == 1:
        # Fed a character at a time, each character of the input (an escape's, a surrogate
        # pair's) comes out alone, with the last character of the JSON that writes it.
        assert sum(1 for t in texts if t) == len(PATCH + " 😀")


def test_a_custom_calls_input_of_another_shape_comes_at_the_end():
    texts, stream = stream_input('{"x": 1, "input": "abc"}', 1)
    assert not any(texts) and stream.final() == "abc"
    texts, stream = stream_input('{"patch": "x"}', 2)
    assert not any(texts) and stream.final() == '{"patch": "x"}'
    # Cut short by the token limit: the text as far as the model wrote it.
    texts, stream = stream_input(custom_arguments(PATCH)[:30], 4)
    assert "".join(texts) == stream.final() == PATCH[:18]
    # Not a JSON string after all: what was given stays, the end has the arguments as written.
    texts, stream = stream_input('{"input": "ab\\q"}', 1)
    assert "".join(texts) == "ab" and stream.final() == '{"input": "ab\\q"}'


def test_tool_choice_names_a_custom_tool_as_a_function():
    assert chat_tool_choice({"type": "custom", "name": "apply_patch"}) == {
        "type": "function",
        "function": {"name": "apply_patch"},
    }
    with pytest.raises(InvalidRequestError) as e:
        chat_tool_choice({"type": "web_search_preview"})
    assert e.value.param == "tool_choice"


@pytest.mark.parametrize(
    ("tool", "param", "needle"),
    [
        ({"type": "web_search"}, "tools[0].type", "hosted tool"),
        ({"type": "file_search", "vector_store_ids": ["v"]}, "tools[0].type", "hosted tool"),
        ({"type": "local_shell"}, "tools[0].type", "built-in tool"),
        ({"type": "computer_use_preview"}, "tools[0].type", "built-in tool"),
        ({"type": "made_up"}, "tools[0].type", "'made_up' is not supported"),
        (
            {**APPLY_PATCH, "format": {"type": "grammar", "syntax": "lark", "definition": "s"}},
            "tools[0].format",
            "format 'grammar' is not supported",
        ),
        ({"type": "custom"}, "tools[0].name", "name is required"),
        (
            {"type": "function", "name": "f", "defer_loading": True},
            "tools[0].defer_loading",
            "tool search",
        ),
        ({"type": "function", "name": "f", "cache": 1}, "tools[0].cache", "has no such field"),
        (
            {**CRM, "tools": [{"type": "web_search"}]},
            "tools[0].tools[0].type",
            "in a namespace",
        ),
        ({**CRM, "tools": []}, "tools[0].tools", "must list tools"),
    ],
)
def test_tools_we_cannot_run_are_refused_by_name(tool, param, needle):
    with pytest.raises(InvalidRequestError, match=needle) as e:
        chat_tools([tool])
    assert e.value.param == param
    if param == "tools[0].type":
        assert "(function, custom and namespace tools are supported)" in str(e.value)


def test_default_valued_extras_are_accepted():
    tool = {"type": "function", "name": "f", "defer_loading": False, "allowed_callers": ["direct"]}
    assert chat_tools([tool]) == [{"type": "function", "function": {"name": "f"}}]


def test_two_tools_of_one_name_are_refused():
    with pytest.raises(InvalidRequestError, match="two tools are named 'apply_patch'"):
        chat_tools([APPLY_PATCH, {"type": "function", "name": "apply_patch"}])
    assert "web_search" in REFUSED_TOOLS and "mcp" in REFUSED_TOOLS


@pytest.fixture
def oai(translated):
    state = translated.app_state()[0]
    # A "model" that writes back what it is told, its hermes tool-call markup parsed out.
    coder = OpenAIEngineModel(
        "coder",
        None,
        EchoFullEngine(),
        frozenset({ModelType.Chat}),
        frozenset(Feature),
        OutputParsers(tool_call_parser="hermes"),
    )
    state.models.add(coder)
    return openai.AsyncOpenAI(
        base_url="http://test/v1",
        api_key="x",
        http_client=translated.http_client(state),
        max_retries=0,
    )


def call_markup(name: str, arguments: dict) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


async def test_a_custom_tool_call_through_the_sdk(oai):
    prompt = call_markup("apply_patch", {"input": PATCH})
    response = await oai.responses.create(model="coder", input=prompt, tools=[APPLY_PATCH])
    (call,) = response.output
    assert call.type == "custom_tool_call"
    assert (call.name, call.input) == ("apply_patch", PATCH) and call.call_id

    async with oai.responses.stream(model="coder", input=prompt, tools=[APPLY_PATCH]) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    assert [(i.type, i.input) for i in final.output] == [("custom_tool_call", PATCH)]
    deltas = [e.delta for e in events if e.type == "response.custom_tool_call_input.delta"]
    (done,) = [e for e in events if e.type == "response.custom_tool_call_input.done"]
    assert "".join(deltas) == done.input == PATCH
    # Streamed as the model writes it (the echo engine: a character a chunk), not whole at the end.
    assert len(deltas) > 1 and all(deltas)
    kinds = [e.type for e in events]
    first = kinds.index("response.custom_tool_call_input.delta")
    assert (
        kinds.index("response.output_item.added")
        < first
        < kinds.index("response.custom_tool_call_input.done")
    )
    assert not any(e.type.startswith("response.function_call") for e in events)

    # A function tool beside it stays a function call.
    both = await oai.responses.create(
        model="coder",
        input=call_markup("lookup", {"q": "x"}),
        tools=[APPLY_PATCH, {"type": "function", "name": "lookup", "parameters": {}}],
    )
    assert both.output[0].type == "function_call" and both.output[0].name == "lookup"

    # A namespace's tool: its flat name for the model, its name and namespace apart here.
    spaced = await oai.responses.create(
        model="coder", input=call_markup("crm__lookup", {"id": 7}), tools=[CRM]
    )
    (found,) = spaced.output
    assert (found.type, found.name, found.namespace) == ("function_call", "lookup", "crm")
    again = await oai.responses.create(
        model="report",
        previous_response_id=spaced.id,
        input=[{"type": "function_call_output", "call_id": found.call_id, "output": "Ann"}],
    )
    assert json.loads(again.output_text)[-2]["tool_calls"][0]["function"]["name"] == "crm__lookup"

    # The call's result goes back as a custom_tool_call_output, continuing the conversation.
    follow = await oai.responses.create(
        model="report",
        previous_response_id=response.id,
        input=[{"type": "custom_tool_call_output", "call_id": call.call_id, "output": "done"}],
    )
    sent = json.loads(follow.output_text)
    (tool_call,) = sent[-2]["tool_calls"]
    assert tool_call["id"] == call.call_id and tool_call["function"]["name"] == "apply_patch"
    assert json.loads(tool_call["function"]["arguments"]) == {"input": PATCH}
    assert sent[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "done"}
    items = await oai.responses.input_items.list(follow.id)
    assert [item.type for item in items.data] == ["custom_tool_call_output"]


async def test_tools_we_cannot_run_are_a_400_through_the_sdk(oai):
    for tool, needle in (
        ({"type": "web_search"}, "'web_search' is a hosted tool"),
        ({"type": "local_shell"}, "'local_shell' is a built-in tool"),
    ):
        with pytest.raises(openai.BadRequestError) as e:
            await oai.responses.create(model="coder", input="x", tools=[tool])
        assert needle in e.value.message and e.value.body["param"] == "tools[0].type"
