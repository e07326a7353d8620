"""Responses API tools → the chat request's tools, and a model's calls back.

A `function` tool is a chat function tool. A `custom` tool (free-form text input instead of JSON
arguments; Codex CLI describes tools such as `apply_patch` this way) is shown to the model as a
function with one string parameter, `input`, so the chat template renders it and the model's
tool-call parser finds its calls like any other; the call comes back as a `custom_tool_call` item
whose `input` is that string. A custom tool's `format` may be plain text only: a grammar (Lark or
regex) would have to be enforced inside the tool call's JSON, which no engine here can do.

A `namespace` groups function and custom tools: the model sees each as a function named
`<namespace>__<name>` (vLLM's flattening), described with the namespace's description first, and
its calls come back with `name` and `namespace` apart. Fields a tool type does not have, and
`defer_loading` (tool search) or `allowed_callers` other than direct calls, are refused.

Every other tool type is refused by name: hosted tools (`web_search`, `file_search`,
`code_interpreter`, `image_generation`, `mcp`) run on OpenAI's servers, and the built-in client
tools (`local_shell`, `shell`, `computer_use_preview`, `apply_patch`) have call formats that only
OpenAI's models are trained to write; a client can describe any of them as a function or custom
tool instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dynamo.llm.errors import InvalidRequestError

#: The one parameter of the function a custom tool is shown as.
CUSTOM_INPUT = "input"
#: Between a namespace's name and its tool's, in the function name the model sees (vLLM's).
NAMESPACE_SEPARATOR = "__"

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
_SUPPORTED = "function, custom and namespace tools are supported"


#: The fields each tool type may carry (`defer_loading` and `allowed_callers` only at their
#: defaults: tool search and programmatic callers are not supported).
_FIELDS = {
    "function": {"type", "name", "description", "parameters", "strict"},
    "custom": {"type", "name", "description", "format"},
    "namespace": {"type", "name", "description", "tools"},
}
_AT_DEFAULT = {"defer_loading": (None, False), "allowed_callers": (None, ["direct"])}


def _check_fields(tool: dict[str, Any], kind: str, where: str) -> None:
    for key, value in tool.items():
        if key in _FIELDS[kind]:
            continue
        if key in _AT_DEFAULT and kind != "namespace" and value in _AT_DEFAULT[key]:
            continue
        why = (
            "tool search and programmatic tool calls are not supported"
            if key in _AT_DEFAULT
            else f"a {kind} tool has no such field"
        )
        raise InvalidRequestError(f"{where}.{key}: {why}", param=f"{where}.{key}")


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


def _function(tool: dict[str, Any], where: str, inside: str | None = None) -> dict[str, Any]:
    """One function or custom tool as a chat function (`inside`: the namespace it is in)."""
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind not in ("function", "custom"):
        allowed = "function and custom tools are, in a namespace" if inside else _SUPPORTED
        why = REFUSED_TOOLS.get(kind, "is not supported") if isinstance(kind, str) else None
        raise InvalidRequestError(
            f"{where}: tool type {kind!r} {why or 'is not supported'} ({allowed})",
            param=f"{where}.type",
        )
    _check_fields(tool, kind, where)
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f"{where}.name is required", param=f"{where}.name")
    if kind == "function":
        function = {
            k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool
        }
    else:
        function = _custom_function(tool, where)
    return function


def _namespace(tool: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """A namespace's tools as chat functions named `<namespace>__<name>`, each described with
    the namespace's description first (the model sees no namespace otherwise)."""
    _check_fields(tool, "namespace", where)
    space = tool.get("name")
    inner = tool.get("tools")
    if not isinstance(space, str) or not space:
        raise InvalidRequestError(f"{where}.name is required", param=f"{where}.name")
    if not isinstance(inner, list) or not inner:
        raise InvalidRequestError(f"{where}.tools must list tools", param=f"{where}.tools")
    out = []
    for j, member in enumerate(inner):
        function = _function(member, f"{where}.tools[{j}]", inside=space)
        function["name"] = flat_name(space, function["name"])
        about = [d for d in (tool.get("description"), function.get("description")) if d]
        if about:
            function["description"] = "\n\n".join(about)
        out.append(function)
    return out


def flat_name(namespace: str, name: str) -> str:
    """The function name a namespace's tool has for the model (vLLM's `<namespace>__<name>`)."""
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}"


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The chat request's `tools` for the Responses request's."""
    if tools is None:
        return None
    out = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        is_space = isinstance(tool, dict) and tool.get("type") == "namespace"
        functions = _namespace(tool, where) if is_space else [_function(tool, where)]
        for function in functions:
            name = function["name"]
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


@dataclass(frozen=True)
class CallNames:
    """How a call the model made (by its chat function name) maps back to the request's tools:
    which are custom tools, and which live in a namespace (`flat name -> (namespace, name)`)."""

    custom: frozenset[str] = frozenset()
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, tools: list[dict[str, Any]] | None) -> CallNames:
        """For tools `chat_tools` has accepted (every one named)."""
        custom: set[str] = set()
        namespaced: dict[str, tuple[str, str]] = {}
        for tool in tools or ():
            if tool["type"] == "custom":
                custom.add(tool["name"])
            elif tool["type"] == "namespace":
                for member in tool["tools"]:
                    flat = flat_name(tool["name"], member["name"])
                    namespaced[flat] = (tool["name"], member["name"])
                    if member["type"] == "custom":
                        custom.add(flat)
        return cls(frozenset(custom), namespaced)

    def item_fields(self, flat: str) -> dict[str, Any]:
        """An output item's `name` (and `namespace`, for a namespace's tool)."""
        if flat in self.namespaced:
            space, name = self.namespaced[flat]
            return {"name": name, "namespace": space}
        return {"name": flat}


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
