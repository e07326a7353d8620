"""Chat completion chunks → an Anthropic message: its stream events and the final object.

As for the Responses API, one builder serves both modes. Events follow Anthropic's order:
`message_start`, then per content block `content_block_start` → `content_block_delta`s →
`content_block_stop`, then `message_delta` (stop reason, output tokens) and `message_stop`.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from dynamo.frontend.http.chat_run import Event
from dynamo.llm.errors import EngineFailedError

_STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


class MessageStream:
    def __init__(self, model: str, stop_sequences: list[str] | None, input_tokens: int):
        self.id = f"msg_{uuid.uuid4().hex}"
        self.model = model
        self._stops = set(stop_sequences or ())
        self.input_tokens = input_tokens
        self.output_tokens = 0
        self.blocks: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None
        self._tools: dict[int, dict[str, Any]] = {}  # chat tool-call index -> tool_use block
        self._finish: str | None = None
        self._matched_stop: str | int | None = None

    def start(self) -> list[Event]:
        message = {**self.message(), "content": [], "stop_reason": None, "stop_sequence": None}
        message["usage"] = {"input_tokens": self.input_tokens, "output_tokens": 0}
        return [{"type": "message_start", "message": message}]

    def on_chunk(self, chunk: dict[str, Any]) -> list[Event]:
        usage = chunk.get("usage")
        if usage:
            self.input_tokens = usage.get("prompt_tokens", self.input_tokens)
            self.output_tokens = usage.get("completion_tokens", self.output_tokens)
        events: list[Event] = []
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                events += self._text("thinking", reasoning)
            if delta.get("content"):
                events += self._text("text", delta["content"])
            for call in delta.get("tool_calls") or ():
                events += self._tool(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                self._matched_stop = choice.get("stop_reason")
        return events

    def finish(self) -> list[Event]:
        events = self._close()
        stop_reason, stop_sequence = self.stop_reason()
        return [
            *events,
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
            },
            {"type": "message_stop"},
        ]

    def stop_reason(self) -> tuple[str, str | None]:
        if isinstance(self._matched_stop, str) and self._matched_stop in self._stops:
            return "stop_sequence", self._matched_stop
        if self._finish in _STOP_REASONS:
            return _STOP_REASONS[self._finish], None
        return ("tool_use" if self._tools else "end_turn"), None

    # -- blocks ---------------------------------------------------------------------------------

    def _begin(self, block: dict[str, Any]) -> Event:
        block["_index"] = len(self.blocks)
        self.blocks.append(block)
        return {
            "type": "content_block_start",
            "index": block["_index"],
            "content_block": _public(block),
        }

    def _close(self) -> list[Event]:
        block, self._open = self._open, None
        if block is None:
            return []
        return [{"type": "content_block_stop", "index": block["_index"]}]

    def _text(self, kind: str, text: str) -> list[Event]:
        events: list[Event] = []
        if self._open is None or self._open["type"] != kind:
            events += self._close()
            block = {"type": kind, kind: ""}
            if kind == "thinking":
                block["signature"] = ""
            events.append(self._begin(block))
            self._open = block
        self._open[kind] += text
        delta = {"type": f"{kind}_delta", kind: text}
        return [
            *events,
            {"type": "content_block_delta", "index": self._open["_index"], "delta": delta},
        ]

    def _tool(self, call: dict[str, Any]) -> list[Event]:
        index = call.get("index", len(self._tools))
        function = call.get("function") or {}
        events: list[Event] = []
        block = self._tools.get(index)
        if block is None:
            events += self._close()
            block = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex}",
                "name": function.get("name") or "",
                "input": {},
                "_json": "",
            }
            self._tools[index] = block
            events.append(self._begin(block))
            self._open = block
        arguments = function.get("arguments") or ""
        if arguments:
            block["_json"] += arguments
            delta = {"type": "input_json_delta", "partial_json": arguments}
            events.append({"type": "content_block_delta", "index": block["_index"], "delta": delta})
        return events

    # -- the message object ---------------------------------------------------------------------

    def message(self) -> dict[str, Any]:
        stop_reason, stop_sequence = self.stop_reason()
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [_final(block) for block in self.blocks],
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
        }


def _public(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if not k.startswith("_")}


def _final(block: dict[str, Any]) -> dict[str, Any]:
    """A block as a non-streamed message holds it: a tool call's input parsed from its JSON."""
    out = _public(block)
    if block["type"] == "tool_use":
        try:
            out["input"] = orjson.loads(block["_json"] or "{}")
        except orjson.JSONDecodeError:
            raise EngineFailedError(
                f"the model called tool '{block['name']}' with arguments that are not JSON"
            ) from None
    return out
