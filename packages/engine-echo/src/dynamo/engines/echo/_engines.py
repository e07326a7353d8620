"""The two echo engines of upstream `dynamo-run`.

`echo_core` is a Backend engine: it streams the prompt's token ids back, so a client sees the
fully templated prompt (send `ignore_eos`, or the template's end-of-turn token stops it early).
`echo_full` is a Chat engine: it streams the last user message back one character per chunk
(its tokens are characters: usage counts them), and ends at a `stop` string as any engine must.
Both pace themselves with `DYN_TOKEN_ECHO_DELAY_MS` (default 10 ms, read once).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from functools import cache
from typing import Any, ClassVar, Self

from dynamo.llm import Context, Engine, EngineConfig, ModelType
from dynamo.llm.chunks import ResponseBuilder, usage
from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.features import Feature
from dynamo.llm.stop_strings import StopStringJail
from dynamo.llm.stream_delta import StreamDelta

DEFAULT_DELAY_MS = 10.0


@cache
def token_delay_seconds() -> float:
    """The pause between tokens, from `DYN_TOKEN_ECHO_DELAY_MS` (read once per process)."""
    raw = os.environ.get("DYN_TOKEN_ECHO_DELAY_MS", "")
    try:
        ms = float(raw) if raw else DEFAULT_DELAY_MS
    except ValueError:
        ms = DEFAULT_DELAY_MS
    return max(ms, 0.0) / 1000.0


async def _pace(delay: float) -> None:
    # sleep(0) still yields to the loop, so a zero delay never starves other requests.
    await asyncio.sleep(delay)


class EchoCoreEngine(Engine):
    """Backend engine that streams the prompt's token ids back, then finishes with `stop`."""

    model_type = ModelType.Backend
    requires_model = True
    accepted_flags = frozenset({"context_length", "kv_cache_block_size", "model_config"})
    #: It echoes, it does not sample: sampling knobs have no effect; nothing else is offered.
    features = frozenset({Feature.UNSAMPLED})

    @classmethod
    async def start(cls, config: EngineConfig) -> Self:
        return cls()

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        delay = token_delay_seconds()
        max_tokens = (request.get("stop_conditions") or {}).get("max_tokens")
        for n, token in enumerate(request["token_ids"], start=1):
            if context.is_stopped():
                yield {"token_ids": [], "finish_reason": "cancelled"}
                return
            await _pace(delay)
            yield {"token_ids": [token]}
            if max_tokens is not None and n >= max_tokens:
                yield {"token_ids": [], "finish_reason": "length"}
                return
        yield {"token_ids": [], "finish_reason": "stop"}


class EchoFullEngine(Engine):
    """Chat (and completions) engine that streams the last user message back, a character a chunk."""

    model_type = ModelType.Chat
    also_serves = frozenset({ModelType.Completion})
    requires_model = False
    accepted_flags: ClassVar[frozenset[str]] = frozenset()
    #: It echoes text: sampling knobs have no effect; stop strings end the echo.
    features = frozenset({Feature.UNSAMPLED, Feature.STOP, Feature.INCLUDE_STOP_STR})

    @classmethod
    async def start(cls, config: EngineConfig) -> Self:
        return cls()

    @staticmethod
    def _prompt(request: dict[str, Any]) -> tuple[str, str]:
        """The text to echo and the chunk field it goes in (`delta` for chat, `text` otherwise)."""
        if "messages" in request:
            last = request["messages"][-1] if request["messages"] else {}
            content = last.get("content")
            if isinstance(content, list) and all(p.get("type") == "text" for p in content):
                content = "\n".join(p["text"] for p in content)  # as a string template sees it
            if last.get("role") != "user" or not isinstance(content, str):
                raise InvalidRequestError(
                    "echo_full needs the last message to be a text user message", param="messages"
                )
            return content, "delta"
        prompt = request.get("prompt")
        if isinstance(prompt, list):
            prompt = prompt[0] if prompt and isinstance(prompt[0], str) else None
        if not isinstance(prompt, str):
            raise InvalidRequestError("echo_full needs a text prompt", param="prompt")
        return prompt, "text"

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        text, field = self._prompt(request)
        delay = token_delay_seconds()
        chat = field == "delta"
        builder = ResponseBuilder(
            "chat" if chat else "completion", context.id(), request.get("model", "")
        )
        max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
        stop = request.get("stop")
        include = request.get("include_stop_str_in_output")
        if include is None:  # the root-level field wins over nvext's, as everywhere
            include = (request.get("nvext") or {}).get("include_stop_str_in_output")
        jail = StopStringJail([stop] if isinstance(stop, str) else stop or (), bool(include))
        finish = "stop"
        matched = None
        n = 0
        for char in text:
            if context.is_stopped():
                break
            await _pace(delay)
            n += 1
            emit, matched = jail.feed(char) if jail else (char, None)
            if emit:
                yield builder.chunk(StreamDelta(emit))
            if matched is not None:
                break
            if max_tokens and n >= max_tokens:
                finish = "length"
                break
        held = jail.release()
        if held and matched is None:  # it was not a stop string after all
            yield builder.chunk(StreamDelta(held))
        # Its tokens are characters: the prompt it echoes, and the characters it went through.
        last = builder.chunk(StreamDelta("", finish))
        last["usage"] = usage(len(text), n)
        yield last
