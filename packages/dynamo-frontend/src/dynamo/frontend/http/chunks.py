"""OpenAI response bodies and stream chunks, built as dicts (pydantic per token costs too much)."""

from __future__ import annotations

import time
from typing import Any

from dynamo.llm.pipeline import StreamDelta


class ResponseBuilder:
    """Builds the chunks and the final body of one chat or completions response."""

    __slots__ = ("_chat", "_first", "created", "id", "model")

    def __init__(self, kind: str, request_id: str, model: str):
        self._chat = kind == "chat"
        self.id = f"chatcmpl-{request_id}" if self._chat else f"cmpl-{request_id}"
        self.model = model
        self.created = int(time.time())
        self._first = True

    def chunk(self, delta: StreamDelta) -> dict[str, Any]:
        if self._chat:
            d: dict[str, Any] = {"content": delta.text}
            if self._first:
                d = {"role": "assistant", "content": delta.text}
                self._first = False
            choice = {
                "index": 0,
                "delta": d,
                "logprobs": None,
                "finish_reason": delta.finish_reason,
            }
            obj = "chat.completion.chunk"
        else:
            choice = {
                "index": 0,
                "text": delta.text,
                "logprobs": None,
                "finish_reason": delta.finish_reason,
            }
            obj = "text_completion"
        if delta.finish_reason is not None:
            choice["stop_reason"] = delta.stop_reason
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        """The final chunk sent when `stream_options.include_usage` is set: no choices."""
        return {
            "id": self.id,
            "object": "chat.completion.chunk" if self._chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage(prompt_tokens, completion_tokens),
        }

    def full(
        self,
        text: str,
        finish_reason: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        stop_reason: str | int | None = None,
    ) -> dict[str, Any]:
        if self._chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
            obj = "text_completion"
        choice["stop_reason"] = stop_reason
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage(prompt_tokens, completion_tokens),
        }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
