"""What the text, stdin and batch inputs share: one chat turn against a `ServedModel`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from dynamo.llm.pipeline import ServedModel, StreamDelta
from dynamo.llm.protocols.openai import ChatCompletionRequest
from dynamo.runtime.context import Context

# The seed's defaults for the non-HTTP inputs.
MAX_TOKENS = 8192
TEMPERATURE = 0.7


def chat_request(
    model: ServedModel, messages: list[dict[str, Any]], *, ignore_eos: bool = False
) -> ChatCompletionRequest:
    body: dict[str, Any] = {
        "model": model.name,
        "messages": messages,
        "stream": True,
        "max_completion_tokens": MAX_TOKENS,
        "temperature": TEMPERATURE,
    }
    if ignore_eos:
        body["nvext"] = {"ignore_eos": True}
    return ChatCompletionRequest.model_validate(body)


def chat_turn(
    model: ServedModel,
    messages: list[dict[str, Any]],
    context: Context,
    *,
    ignore_eos: bool = False,
) -> AsyncIterator[StreamDelta]:
    return model.chat(chat_request(model, messages, ignore_eos=ignore_eos), context)
