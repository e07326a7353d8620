"""Chat completion chunks → a Responses API response: its typed stream events and final object.

One builder serves both modes: a streamed request sends every event it returns, a non-streamed
one drops them and answers with `response()`. The event sequence is the one the `openai` SDK's
`responses.stream` accumulates: `response.created`, `response.in_progress`, then per output
item `output_item.added` → deltas → `.done` events → `output_item.done`, and last
`response.completed` (or `response.incomplete` when the token limit cut the answer short).
A call to a custom tool is a `custom_tool_call` item, its input streamed as the model writes it
(`custom_tool_call_input.delta`, decoded out of the arguments by `CustomInputStream`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from dynamo.frontend.http.chat_run import Event
from dynamo.frontend.http.responses.convert import seal_reasoning
from dynamo.frontend.http.responses.custom_input import CustomInputStream
from dynamo.frontend.http.responses.protocol import ResponsesRequest
from dynamo.frontend.http.responses.tools import CallNames

#: Chat finish reasons that leave a response incomplete, and the reason OpenAI names.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


#: Our error types that have a code of their own on a failed response (OpenAI's closed list);
#: any other failure is a `server_error` there (the `error` event before it has our code).
_FAILED_CODES = {
    "rate_limit_exceeded": "rate_limit_exceeded",
    "invalid_request_error": "invalid_prompt",
}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class ResponseStream:
    """Builds one response from the chunks of the chat stream that answers it."""

    def __init__(
        self,
        request: ResponsesRequest,
        model: str,
        count_tokens: Callable[[str], int],
        response_id: str | None = None,
    ):
        self.request = request
        self.model = model
        self.id = response_id or new_id("resp")
        self.created_at = int(time.time())
        self._count_tokens = count_tokens
        self._seq = 0
        self.output: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the message or reasoning item being written
        self._calls: dict[int, dict[str, Any]] = {}  # chat tool-call index -> call item
        self._names = CallNames.of(request.tools)
        self._finish: str | None = None
        self._usage: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0}
        self.status = "in_progress"
        self.error: dict[str, Any] | None = None

    # -- events ---------------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def start(self) -> list[Event]:
        return [
            self._event("response.created", response=self.response()),
            self._event("response.in_progress", response=self.response()),
        ]

    def on_chunk(self, chunk: dict[str, Any]) -> list[Event]:
        """The events one chat chunk gives rise to."""
        usage = chunk.get("usage")
        if usage:
            self._usage = usage
        events: list[Event] = []
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                events += self._text_delta("reasoning", reasoning)
            if delta.get("content"):
                events += self._text_delta("message", delta["content"])
            for call in delta.get("tool_calls") or ():
                events += self._tool_delta(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return events

    def finish(self) -> list[Event]:
        """Close every open item and end the response (completed, or incomplete at the limit)."""
        events = self._close_open()
        for index in sorted(self._calls):
            item = self._calls[index]
            where = {"item_id": item["id"], "output_index": item["_index"]}
            if item["type"] == "custom_tool_call":
                stream: CustomInputStream = item["_input"]
                item["input"] = text = stream.final()
                # What the deltas have not given yet: all of it for arguments of another shape.
                # (Where they gave something else, duplicate keys, the done event has the input.)
                if len(text) > len(stream.sent) and text.startswith(stream.sent):
                    events.append(self._input_delta(item, text[len(stream.sent) :]))
                events.append(
                    self._event(
                        "response.custom_tool_call_input.done", input=item["input"], **where
                    )
                )
            else:
                item["status"] = "completed"
                events.append(
                    self._event(
                        "response.function_call_arguments.done",
                        name=item["name"],
                        arguments=item["arguments"],
                        **where,
                    )
                )
            events.append(self._item_done(item))
        self._calls = {}
        reason = _INCOMPLETE.get(self._finish or "")
        self.status = "incomplete" if reason else "completed"
        kind = "response.incomplete" if reason else "response.completed"
        return [*events, self._event(kind, response=self.response())]

    def fail(self, error: dict[str, Any]) -> list[Event]:
        """The stream broke: an `error` event, then `response.failed` with the error on it."""
        self.status = "failed"
        kind = error.get("type")
        self.error = {
            "code": _FAILED_CODES.get(kind or "", "server_error"),
            "message": error["message"],
        }
        return [
            self._event(
                "error",
                code=error.get("code") or kind,
                message=error["message"],
                param=error.get("param"),
            ),
            self._event("response.failed", response=self.response()),
        ]

    # -- items ----------------------------------------------------------------------------------

    def _add_item(self, item: dict[str, Any]) -> Event:
        item["_index"] = len(self.output)
        self.output.append(item)
        return self._event(
            "response.output_item.added", output_index=item["_index"], item=_public(item)
        )

    def _item_done(self, item: dict[str, Any]) -> Event:
        return self._event(
            "response.output_item.done", output_index=item["_index"], item=_public(item)
        )

    def _text_delta(self, kind: str, text: str) -> list[Event]:
        events: list[Event] = []
        if self._open is None or self._open["type"] != kind:
            events += self._close_open()
            events += self._open_item(kind)
        item = self._open
        assert item is not None
        item["_text"] += text
        name = (
            "response.output_text.delta" if kind == "message" else "response.reasoning_text.delta"
        )
        extra = {"logprobs": []} if kind == "message" else {}
        events.append(
            self._event(
                name,
                item_id=item["id"],
                output_index=item["_index"],
                content_index=0,
                delta=text,
                **extra,
            )
        )
        return events

    def _open_item(self, kind: str) -> list[Event]:
        if kind == "message":
            item = {
                "type": "message",
                "id": new_id("msg"),
                "status": "in_progress",
                "role": "assistant",
                "content": [],
                "_text": "",
            }
            added = self._add_item(item)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            self._open = item
            return [
                added,
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=item["_index"],
                    content_index=0,
                    part=part,
                ),
            ]
        item = {"type": "reasoning", "id": new_id("rs"), "summary": [], "content": [], "_text": ""}
        self._open = item
        return [self._add_item(item)]

    def _close_open(self) -> list[Event]:
        item, self._open = self._open, None
        if item is None:
            return []
        text = item["_text"]
        where = {"item_id": item["id"], "output_index": item["_index"], "content_index": 0}
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            item["content"] = [part]
            item["status"] = "completed"
            return [
                self._event("response.output_text.done", text=text, logprobs=[], **where),
                self._event("response.content_part.done", part=part, **where),
                self._item_done(item),
            ]
        item["content"] = [{"type": "reasoning_text", "text": text}]
        if "reasoning.encrypted_content" in (self.request.include or ()):
            item["encrypted_content"] = seal_reasoning(text)
        return [
            self._event("response.reasoning_text.done", text=text, **where),
            self._item_done(item),
        ]

    def _tool_delta(self, call: dict[str, Any]) -> list[Event]:
        index = call.get("index", len(self._calls))
        function = call.get("function") or {}
        events: list[Event] = []
        item = self._calls.get(index)
        if item is None:
            events += self._close_open()
            flat = function.get("name") or ""
            named = {"call_id": call.get("id") or new_id("call"), **self._names.item_fields(flat)}
            if flat in self._names.custom:
                item = {
                    "type": "custom_tool_call",
                    "id": new_id("ctc"),
                    **named,
                    "input": "",
                    "_input": CustomInputStream(),
                }
            else:
                item = {
                    "type": "function_call",
                    "id": new_id("fc"),
                    **named,
                    "arguments": "",
                    "status": "in_progress",
                }
            self._calls[index] = item
            events.append(self._add_item(item))
        arguments = function.get("arguments") or ""
        if item["type"] == "custom_tool_call":
            text = item["_input"].feed(arguments) if arguments else ""
            if text:
                events.append(self._input_delta(item, text))
        elif arguments:
            item["arguments"] += arguments
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=item["_index"],
                    delta=arguments,
                )
            )
        return events

    def _input_delta(self, item: dict[str, Any], text: str) -> Event:
        return self._event(
            "response.custom_tool_call_input.delta",
            item_id=item["id"],
            output_index=item["_index"],
            delta=text,
        )

    # -- the response object --------------------------------------------------------------------

    def usage(self) -> dict[str, Any]:
        prompt = self._usage.get("prompt_tokens", 0)
        completion = self._usage.get("completion_tokens", 0)
        cached = (self._usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        reasoning = (self._usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
        if reasoning is None:  # the pipeline did not count them: count the reasoning text
            reasoning = sum(
                self._count_tokens(item["_text"])
                for item in self.output
                if item["type"] == "reasoning"
            )
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": min(reasoning, completion)},
            "total_tokens": prompt + completion,
        }

    def response(self) -> dict[str, Any]:
        r = self.request
        text_format = r.text.format.wire() if r.text is not None else {"type": "text"}
        incomplete = _INCOMPLETE.get(self._finish or "") if self.status == "incomplete" else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "background": False,
            "error": self.error,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": r.instructions,
            "max_output_tokens": r.max_output_tokens,
            "metadata": r.metadata or {},
            "model": self.model,
            "output": [_public(item) for item in self.output],
            "parallel_tool_calls": r.parallel_tool_calls
            if r.parallel_tool_calls is not None
            else True,
            "previous_response_id": r.previous_response_id,
            "prompt_cache_key": r.prompt_cache_key,
            "reasoning": {
                "effort": r.reasoning.effort if r.reasoning else None,
                "summary": r.reasoning.summary if r.reasoning else None,
            },
            "safety_identifier": r.safety_identifier,
            "service_tier": r.service_tier or "default",
            "store": r.store,
            "temperature": r.temperature if r.temperature is not None else 1.0,
            "text": {"format": text_format},
            "tool_choice": r.tool_choice if r.tool_choice is not None else "auto",
            "tools": r.tools or [],
            "top_p": r.top_p if r.top_p is not None else 1.0,
            "truncation": r.truncation or "disabled",
            "usage": self.usage() if self.status != "in_progress" else None,
            "user": r.user,
        }


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as the client sees it (without our bookkeeping keys)."""
    return {k: v for k, v in item.items() if not k.startswith("_")}
