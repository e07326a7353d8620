"""OpenAI response bodies and stream chunks, built as dicts (pydantic per token costs too much).

One `ResponseBuilder` per response: `chunk(delta)` for each streamed piece, `usage_chunk(last)`
for `stream_options.include_usage`, and `full(answer)` for a unary body, where `answer` is the
`Answer` the stream was folded into. Choices are indexed (n > 1, lists of prompts), and carry
`reasoning_content`, `tool_calls` and `logprobs` in OpenAI's shapes when the pipeline produced
them; `usage` carries `prompt_tokens_details.cached_tokens` and
`completion_tokens_details.reasoning_tokens` where they are known.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from dynamo.llm.logprobs import TokenLogprob, chat_logprobs, completion_logprobs
from dynamo.llm.parsers import ToolCallDelta, merge_calls
from dynamo.llm.stream_delta import StreamDelta


class ResponseBuilder:
    """Builds the chunks and the final body of one chat or completions response."""

    __slots__ = (
        "_chat",
        "_frames",
        "_offsets",
        "_started",
        "continuous_usage",
        "created",
        "fingerprint",
        "id",
        "model",
    )

    def __init__(
        self,
        kind: str,
        request_id: str,
        model: str,
        fingerprint: str | None = None,
        continuous_usage: bool = False,
    ) -> None:
        self._chat = kind == "chat"
        self.id = f"chatcmpl-{request_id}" if self._chat else f"cmpl-{request_id}"
        self.model = model
        self.created = int(time.time())
        self.fingerprint = fingerprint
        #: Every chunk carries the usage so far (`stream_options.continuous_usage_stats`).
        self.continuous_usage = continuous_usage
        self._started: set[int] = set()  # chat choices whose role went out
        self._offsets: dict[int, int] = {}  # completions: text offset per choice
        self._frames: dict[int, tuple[bytes, bytes]] = {}  # sse(): per choice, around the text

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.fingerprint is not None:
            body["system_fingerprint"] = self.fingerprint
        return body

    def chunk(self, delta: StreamDelta) -> dict[str, Any]:
        index = delta.index
        if self._chat:
            d: dict[str, Any] = {}
            if index not in self._started:
                self._started.add(index)
                d["role"] = "assistant"
            if delta.reasoning:
                d["reasoning_content"] = delta.reasoning
            if delta.tool_calls:
                d["tool_calls"] = [c.to_openai() for c in merge_calls(delta.tool_calls)]
            if delta.text or not (delta.reasoning or delta.tool_calls):
                d["content"] = delta.text
            logprobs = chat_logprobs(delta.logprobs) if delta.logprobs else None
            choice: dict[str, Any] = {
                "index": index,
                "delta": d,
                "logprobs": logprobs,
                "finish_reason": delta.finish_reason,
            }
            obj = "chat.completion.chunk"
        else:
            offset = self._offsets.get(index, 0)
            logprobs = completion_logprobs(delta.logprobs, offset) if delta.logprobs else None
            self._offsets[index] = offset + len(delta.text)
            choice = {
                "index": index,
                "text": delta.text,
                "logprobs": logprobs,
                "finish_reason": delta.finish_reason,
            }
            obj = "text_completion"
        if delta.finish_reason is not None:
            choice["stop_reason"] = delta.stop_reason
        body = self._envelope(obj, [choice])
        if self.continuous_usage:
            body["usage"] = usage_of(delta)
        return body

    def sse(self, delta: StreamDelta) -> bytes:
        """`chunk(delta)` as one SSE event (`data: {...}\\n\\n`), byte for byte what
        `orjson.dumps` makes of the chunk.

        Most pieces of a stream are plain text in the middle of a choice: for those the event is
        the choice's envelope, encoded once per response and choice, around the JSON of the new
        text, so a token costs one `orjson.dumps` of a string and one join. Anything else (a
        choice's first or last piece, reasoning, tool calls, logprobs, usage per chunk) is built
        as a dict and encoded whole.
        """
        index = delta.index
        plain = (
            delta.finish_reason is None
            and not (delta.reasoning or delta.tool_calls or delta.logprobs)
            and not self.continuous_usage
            and (index in self._started or not self._chat)
        )
        if not plain:
            return b"data: " + orjson.dumps(self.chunk(delta)) + b"\n\n"
        frame = self._frames.get(index)
        if frame is None:
            frame = self._frames[index] = self._frame(index)
        if not self._chat:
            self._offsets[index] = self._offsets.get(index, 0) + len(delta.text)
        return b"".join((frame[0], orjson.dumps(delta.text), frame[1]))

    def _frame(self, index: int) -> tuple[bytes, bytes]:
        """The bytes of a plain text chunk of choice `index` before and after its text."""
        marker = "\x00text\x00"
        if self._chat:
            choice: dict[str, Any] = {"index": index, "delta": {"content": marker}}
        else:
            choice = {"index": index, "text": marker}
        choice["logprobs"] = None
        choice["finish_reason"] = None
        obj = "chat.completion.chunk" if self._chat else "text_completion"
        before, after = orjson.dumps(self._envelope(obj, [choice])).split(orjson.dumps(marker))
        return b"data: " + before, after + b"\n\n"

    def usage_chunk(self, last: StreamDelta) -> dict[str, Any]:
        """The final chunk sent when `stream_options.include_usage` is set: no choices."""
        body = self._envelope("chat.completion.chunk" if self._chat else "text_completion", [])
        body["usage"] = usage_of(last)
        return body

    def full(self, answer: Answer) -> dict[str, Any]:
        choices = []
        for index in sorted(answer.choices):
            c = answer.choices[index]
            text = "".join(c.text)
            if self._chat:
                message: dict[str, Any] = {"role": "assistant", "content": text}
                calls = merge_calls(c.tool_calls)
                if calls:
                    message["content"] = text or None
                    message["tool_calls"] = [_full_call(call) for call in calls]
                if c.reasoning:
                    message["reasoning_content"] = "".join(c.reasoning)
                choice: dict[str, Any] = {
                    "index": index,
                    "message": message,
                    "logprobs": chat_logprobs(c.logprobs) if c.logprobs else None,
                    "finish_reason": c.finish_reason,
                }
            else:
                choice = {
                    "index": index,
                    "text": text,
                    "logprobs": completion_logprobs(c.logprobs, 0) if c.logprobs else None,
                    "finish_reason": c.finish_reason,
                }
            choice["stop_reason"] = c.stop_reason
            choices.append(choice)
        body = self._envelope("chat.completion" if self._chat else "text_completion", choices)
        body["usage"] = usage_of(answer.last) if answer.last else usage(0, 0)
        return body


def _full_call(call: ToolCallDelta) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


@dataclass
class _Choice:
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None


@dataclass
class Answer:
    """A stream folded into whole choices, for a unary response."""

    choices: dict[int, _Choice] = field(default_factory=dict)
    last: StreamDelta | None = None

    def add(self, delta: StreamDelta) -> None:
        c = self.choices.get(delta.index)
        if c is None:
            c = self.choices[delta.index] = _Choice()
        c.text.append(delta.text)
        if delta.reasoning:
            c.reasoning.append(delta.reasoning)
        if delta.tool_calls:
            c.tool_calls.extend(delta.tool_calls)
        if delta.logprobs:
            c.logprobs.extend(delta.logprobs)
        if delta.finish_reason is not None:
            c.finish_reason = delta.finish_reason
            c.stop_reason = delta.stop_reason
        self.last = delta


def usage_of(last: StreamDelta) -> dict[str, Any]:
    """`usage` from the last delta of a stream (its token counts are the request's totals)."""
    body: dict[str, Any] = usage(last.prompt_tokens, last.completion_tokens)
    if last.cached_tokens is not None:
        body["prompt_tokens_details"] = {"cached_tokens": last.cached_tokens}
    if last.reasoning_tokens is not None:
        body["completion_tokens_details"] = {"reasoning_tokens": last.reasoning_tokens}
    return body


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
