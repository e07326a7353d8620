"""Anthropic Messages request → the chat request our pipeline runs.

`system` is a system message; a user turn's `tool_result` blocks are `tool` messages (before the
turn's text, as the results answer the previous assistant turn); an assistant turn's `tool_use`
blocks are its tool calls and its `thinking` blocks its reasoning. Tools map onto function tools,
`tool_choice` any/tool/none onto required/a named function/none.
"""

from __future__ import annotations

from typing import Any

import orjson

from dynamo.frontend.http.anthropic.protocol import CountTokensRequest, Message, MessagesRequest
from dynamo.frontend.http.responses.convert import reasoning_effort
from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.protocols.openai import ChatCompletionRequest


def _text_blocks(content: Any, param: str) -> str:
    """Text of a `system` or `tool_result` content: a string or a list of text blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for i, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text":
            kind = block.get("type") if isinstance(block, dict) else None
            raise InvalidRequestError(
                f"{param}.{i}: blocks of type {kind!r} are not supported here (text only)",
                param=f"{param}.{i}.type",
            )
        parts.append(block.get("text", ""))
    return "".join(parts)


def _message(message: Message, where: str) -> list[dict[str, Any]]:
    """The chat messages one Anthropic message becomes."""
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for i, block in enumerate(message.content):
        kind = block.get("type")
        param = f"{where}.content.{i}"
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use" and message.role == "assistant":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
        elif kind == "tool_result" and message.role == "user":
            content = _text_blocks(block.get("content"), f"{param}.content")
            if block.get("is_error"):
                content = f"Error: {content}"
            results.append(
                {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": content}
            )
        elif kind == "thinking" and message.role == "assistant":
            reasoning.append(block.get("thinking", ""))
        elif kind == "redacted_thinking" and message.role == "assistant":
            continue  # encrypted reasoning of another provider: nothing a template could show
        else:
            raise InvalidRequestError(
                f"{param}: {message.role} content blocks of type {kind!r} are not supported",
                param=f"{param}.type",
            )
    out = list(results)
    if texts or calls or reasoning or not results:
        chat: dict[str, Any] = {"role": message.role, "content": "".join(texts)}
        if calls:
            chat["tool_calls"] = calls
        if reasoning:
            chat["reasoning_content"] = "".join(reasoning)
        out.append(chat)
    return out


def _tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") not in (None, "custom") or "input_schema" not in tool:
            raise InvalidRequestError(
                f"tools.{i}: only client tools with an input_schema are supported "
                f"(not {tool.get('type') or tool.get('name')!r})",
                param=f"tools.{i}",
            )
        function = {"name": tool.get("name"), "parameters": tool["input_schema"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _chat_body(request: MessagesRequest | CountTokensRequest) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": _text_blocks(request.system, "system")})
    for i, message in enumerate(request.messages):
        messages += _message(message, f"messages.{i}")
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "tools": _tools(request.tools),
    }
    choice = request.tool_choice
    if choice is not None:
        body["tool_choice"] = {
            "auto": "auto",
            "any": "required",
            "none": "none",
            "tool": {"type": "function", "function": {"name": choice.name}},
        }[choice.type]
        if choice.disable_parallel_tool_use:
            body["parallel_tool_calls"] = False
    template_kwargs: dict[str, Any] = {}
    thinking = request.thinking
    if thinking is not None:
        # The switch reasoning models' chat templates read (Qwen3's `enable_thinking`).
        template_kwargs["enable_thinking"] = thinking.type != "disabled"
        if thinking.budget_tokens is not None and thinking.type == "enabled":
            body["nvext"] = {"max_thinking_tokens": thinking.budget_tokens}
    output = request.output_config
    if output is not None:
        if output.effort is not None:
            body["reasoning_effort"] = reasoning_effort(output.effort, "output_config.effort")
        if output.format is not None:
            schema = {"name": "output", "schema": output.format.schema_}
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
    if template_kwargs:
        body["chat_template_kwargs"] = template_kwargs
    return body


def to_chat_request(request: MessagesRequest) -> ChatCompletionRequest:
    body = _chat_body(request)
    body.update(
        stream=request.stream,
        max_completion_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        stop=request.stop_sequences,
        user=request.metadata.user_id if request.metadata else None,
    )
    return ChatCompletionRequest.model_validate({k: v for k, v in body.items() if v is not None})


def to_count_request(request: CountTokensRequest) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {k: v for k, v in _chat_body(request).items() if v is not None}
    )
