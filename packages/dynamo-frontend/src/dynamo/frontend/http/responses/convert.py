"""Responses API input → the chat request our pipeline runs, and output items → chat messages.

Input items map onto chat messages the way OpenAI documents their meaning: `instructions` is a
system message (not carried to the next turn), `developer` is `system`, a `function_call` item is
an assistant tool call, a `function_call_output` a `tool` message (a `custom_tool_call` and its
output likewise, its input as the `input` argument, see `tools`), and a `reasoning` item the
reasoning of the assistant turn that follows it. The same mapping turns a stored response's
output items into the conversation a later `previous_response_id` continues.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from dynamo.frontend.http.responses.protocol import ResponsesRequest
from dynamo.frontend.http.responses.tools import (
    chat_tool_choice,
    chat_tools,
    custom_arguments,
    flat_name,
)
from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.protocols.openai import ChatCompletionRequest

_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_TEXT_PARTS = {"input_text", "output_text", "text", "refusal"}
#: The reasoning efforts a chat request takes.
CHAT_EFFORTS = ("minimal", "low", "medium", "high")


def _text(content: Any, param: str) -> str:
    """A message's content: a string, or text parts joined (images and files are refused)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"{param} must be a string or a list of parts", param=param)
    parts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS:
            raise InvalidRequestError(
                f"{param}[{i}]: content of type {kind!r} is not supported (text only)",
                param=f"{param}[{i}].type",
            )
        parts.append(part.get("refusal") if kind == "refusal" else part.get("text", ""))
    return "".join(p or "" for p in parts)


_SEAL = "dynamo-reasoning-v1:"


def seal_reasoning(text: str) -> str:
    """A reasoning item's `encrypted_content`: its text, opaque to the client, read back here."""
    return _SEAL + base64.urlsafe_b64encode(text.encode()).decode()


def open_reasoning(blob: str, param: str) -> str:
    if not blob.startswith(_SEAL):
        raise InvalidRequestError(
            f"{param}: encrypted_content not made by this server", param=param
        )
    try:
        return base64.urlsafe_b64decode(blob[len(_SEAL) :]).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError(f"{param}: encrypted_content is damaged", param=param) from None


def _reasoning_text(item: dict[str, Any], where: str) -> str:
    parts = item.get("content") or item.get("summary") or []
    text = "".join(p.get("text", "") for p in parts if isinstance(p, dict))
    if not text and item.get("encrypted_content"):
        return open_reasoning(item["encrypted_content"], f"{where}.encrypted_content")
    return text


def items_to_messages(items: str | list[dict[str, Any]], param: str = "input") -> list[dict]:
    """Chat messages for Responses input (or output) items."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict[str, Any]] = []
    reasoning: str | None = None
    for i, item in enumerate(items):
        where = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequestError(f"{where} must be an object", param=where)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = _ROLES.get(item.get("role", ""))
            if role is None:
                raise InvalidRequestError(
                    f"{where}.role must be user, system, developer or assistant",
                    param=f"{where}.role",
                )
            message: dict[str, Any] = {
                "role": role,
                "content": _text(item.get("content", ""), f"{where}.content"),
            }
            if role == "assistant" and reasoning is not None:
                message["reasoning_content"], reasoning = reasoning, None
            messages.append(message)
        elif kind in ("function_call", "custom_tool_call"):
            arguments = (
                item.get("arguments", "")
                if kind == "function_call"
                else custom_arguments(item.get("input", ""))
            )
            name = item.get("name")
            if item.get("namespace") and isinstance(name, str):
                name = flat_name(item["namespace"], name)
            call = {
                "id": item.get("call_id") or item.get("id"),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant" and reasoning is None:
                last["tool_calls"] = [call]  # the text of the same turn, then its calls
            else:
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
                if reasoning is not None:
                    message["reasoning_content"], reasoning = reasoning, None
                messages.append(message)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output", "")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": _text(output, f"{where}.output"),
                }
            )
        elif kind == "reasoning":
            reasoning = (reasoning or "") + _reasoning_text(item, where)
        else:
            raise InvalidRequestError(
                f"{where}: input items of type {kind!r} are not supported "
                "(message, function_call, function_call_output, custom_tool_call, "
                "custom_tool_call_output and reasoning are)",
                param=f"{where}.type",
            )
    return messages


def reasoning_effort(effort: str, param: str) -> str:
    """An effort the chat request takes (and hands its chat template, as vLLM does)."""
    if effort not in CHAT_EFFORTS:
        raise InvalidRequestError(
            f"{param} {effort!r} is not supported ({', '.join(CHAT_EFFORTS)} are)", param=param
        )
    return effort


def to_chat_request(
    request: ResponsesRequest, history: list[dict[str, Any]]
) -> tuple[ChatCompletionRequest, list[dict[str, Any]]]:
    """The chat request to run, and the conversation so far (history + this input, without the
    instructions) for the next turn to continue."""
    conversation = [*history, *items_to_messages(request.input)]
    messages = list(conversation)
    if request.instructions:
        messages.insert(0, {"role": "system", "content": request.instructions})
    if not messages:
        raise InvalidRequestError("input must not be empty", param="input")
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "stream": request.stream,
        "max_completion_tokens": request.max_output_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "tools": chat_tools(request.tools),
        "tool_choice": chat_tool_choice(request.tool_choice),
        "user": request.user,
    }
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.text is not None:
        if request.text.verbosity is not None:
            raise InvalidRequestError("text.verbosity is not supported", param="text.verbosity")
        fmt = request.text.format.wire()
        if fmt["type"] == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif fmt["type"] == "json_schema":
            schema = {k: v for k, v in fmt.items() if k != "type" and v is not None}
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
    if request.reasoning is not None:
        summary = request.reasoning.summary or request.reasoning.generate_summary
        if summary not in (None, "auto"):
            raise InvalidRequestError(
                f"reasoning.summary {summary!r} is not supported: reasoning is returned as "
                "reasoning text, never summarized",
                param="reasoning.summary",
            )
        if request.reasoning.effort is not None:
            body["reasoning_effort"] = reasoning_effort(
                request.reasoning.effort, "reasoning.effort"
            )
    return ChatCompletionRequest.model_validate(
        {k: v for k, v in body.items() if v is not None}
    ), conversation


_ID_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "reasoning": "rs",
}


def input_items_with_ids(items: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request's input as the items `GET /v1/responses/{id}/input_items` lists: a string is
    one user message; every item gets an id (its own, or a new one)."""
    if isinstance(items, str):
        items = [{"role": "user", "content": [{"type": "input_text", "text": items}]}]
    out = []
    for item in items:
        kind = item.get("type") or "message"
        listed = {"type": kind, **item}
        if kind == "message" and isinstance(listed.get("content"), str):
            part = "output_text" if listed.get("role") == "assistant" else "input_text"
            listed["content"] = [{"type": part, "text": listed["content"]}]
        listed.setdefault("id", f"{_ID_PREFIXES.get(kind, 'item')}_{uuid.uuid4().hex}")
        out.append(listed)
    return out
