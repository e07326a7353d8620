"""Responses API tools → the chat request's tools, and a model's calls back.

A `function` tool is a chat function tool. A `custom` tool (free-form text input instead of JSON
arguments; Codex CLI describes tools such as `apply_patch` this way) is shown to the model as a
function with one string parameter, `input`, so the chat template renders it and the model's
tool-call parser finds its calls like any other; the call comes back as a `custom_tool_call` item
whose `input` is that string. A custom tool's `format` may be plain text only: a grammar (Lark or
regex) would have to be enforced inside the tool call's JSON, which no engine here can do.

Every other tool type is refused by name: hosted tools (`web_search`, `file_search`,
`code_interpreter`, `image_generation`, `mcp`) run on OpenAI's servers, and the built-in client
tools (`local_shell`, `shell`, `computer_use_preview`, `apply_patch`) have call formats that only
OpenAI's models are trained to write; a client can describe any of them as a function or custom
tool instead.
"""

from __future__ import annotations

import json
from typing import Any

from dynamo.llm.errors import InvalidRequestError

#: The one parameter of the function a custom tool is shown as.
CUSTOM_INPUT = "input"

_HOSTED = "is a hosted tool that OpenAI runs on its own servers; this server runs none"
_BUILT_IN = (
    "is a built-in tool of OpenAI's models, called in a format only they are trained on; "
    "describe it as a function or custom tool instead"
)
#: Tool types this server cannot run, with why.
REFUSED_TOOLS = {
    "web_search": _HOSTED,
    "web_search_preview": _HOSTED,
    "web_search_2025_08_26": _HOSTED,
    "web_search_preview_2025_03_11": _HOSTED,
    "file_search": _HOSTED,
    "code_interpreter": _HOSTED,
    "image_generation": _HOSTED,
    "mcp": _HOSTED,
    "local_shell": _BUILT_IN,
    "shell": _BUILT_IN,
    "computer": _BUILT_IN,
    "computer_use": _BUILT_IN,
    "computer_use_preview": _BUILT_IN,
    "apply_patch": _BUILT_IN,
}
_SUPPORTED = "function and custom tools are supported"


def _custom_function(tool: dict[str, Any], where: str) -> dict[str, Any]:
    fmt = tool.get("format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        kind = fmt.get("type") if isinstance(fmt, dict) else fmt
        raise InvalidRequestError(
            f"{where}.format: a custom tool's input format {kind!r} is not supported: its "
            "grammar cannot be enforced inside a tool call here (format type 'text' is)",
            param=f"{where}.format",
        )
    function: dict[str, Any] = {"name": tool.get("name")}
    if tool.get("description") is not None:
        function["description"] = tool["description"]
    return function | {
        "parameters": {
            "type": "object",
            "properties": {
                CUSTOM_INPUT: {
                    "type": "string",
                    "description": "The tool's input, as free-form text.",
                }
            },
            "required": [CUSTOM_INPUT],
            "additionalProperties": False,
        },
    }


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The chat request's `tools` for the Responses request's."""
    if tools is None:
        return None
    out = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        kind = tool.get("type")
        if kind == "function":
            function = {
                k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool
            }
        elif kind == "custom":
            function = _custom_function(tool, where)
        else:
            why = REFUSED_TOOLS.get(kind, "is not supported") if isinstance(kind, str) else None
            raise InvalidRequestError(
                f"{where}: tool type {kind!r} {why or 'is not supported'} ({_SUPPORTED})",
                param=f"{where}.type",
            )
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(f"{where}.name is required", param=f"{where}.name")
        if name in seen:
            raise InvalidRequestError(
                f"{where}.name: two tools are named {name!r}", param=f"{where}.name"
            )
        seen.add(name)
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: str | dict[str, Any] | None) -> Any:
    """The chat request's `tool_choice`: a named function or custom tool is a named function."""
    if choice is None or isinstance(choice, str):
        return choice
    if choice.get("type") in ("function", "custom") and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequestError(
        f"tool_choice of type {choice.get('type')!r} is not supported "
        "(auto, none, required, a function or a custom tool are)",
        param="tool_choice",
    )


def custom_tool_names(tools: list[dict[str, Any]] | None) -> frozenset[str]:
    """The names of the request's custom tools: calls to these are `custom_tool_call` items."""
    return frozenset(t.get("name") for t in tools or () if t.get("type") == "custom")


def custom_input(arguments: str) -> str:
    """A custom tool call's input from the arguments the model wrote for its function: the
    `input` string; arguments of any other shape are passed on whole, as the text they are."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(parsed, dict) and isinstance(parsed.get(CUSTOM_INPUT), str):
        return parsed[CUSTOM_INPUT]
    return arguments


def custom_arguments(text: str) -> str:
    """The function arguments a custom tool call's input stands for (for the chat history)."""
    return json.dumps({CUSTOM_INPUT: text}, ensure_ascii=False)
