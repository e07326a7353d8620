"""OpenAI chat and completions response shapes, as models: for `/openapi.json` and for tests.

The frontend builds responses and chunks as dicts (`dynamo.llm.chunks`): pydantic per
token would cost more than the rest of the frontend. These models say what those dicts are, and a
test validates the builder's output against them, so the published schema cannot drift from
what is sent.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # see `openai.STRICT_JSON`


class TopLogprobEntry(_Shape):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobEntry(_Shape):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprobEntry]


class ChatLogprobs(_Shape):
    content: list[TokenLogprobEntry] | None
    refusal: list[TokenLogprobEntry] | None = None


class CompletionLogprobs(_Shape):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class FunctionCall(_Shape):
    name: str
    arguments: str


class ToolCall(_Shape):
    id: str
    type: Literal["function"]
    function: FunctionCall


class FunctionCallDelta(_Shape):
    name: str | None = None
    arguments: str | None = None


class ToolCallChunk(_Shape):
    """A piece of a tool call: `id`, `type` and `name` on its first piece, arguments after."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta


class PromptTokensDetails(_Shape):
    cached_tokens: int


class CompletionTokensDetails(_Shape):
    reasoning_tokens: int


class Usage(_Shape):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


class AssistantMessage(_Shape):
    role: Literal["assistant"]
    content: str | None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(_Shape):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: FinishReason | None
    #: vLLM's: the stop string or stop token id that ended the choice.
    stop_reason: str | int | None = None


class ChatCompletionResponse(_Shape):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(_Shape):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallChunk] | None = None


class ChatChunkChoice(_Shape):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None
    finish_reason: FinishReason | None
    stop_reason: str | int | None = None


class ChatCompletionChunk(_Shape):
    """One server-sent event of a streamed chat completion (`data: {...}`)."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionChoice(_Shape):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: FinishReason | None
    stop_reason: str | int | None = None


class CompletionResponse(_Shape):
    """A completion, and (with `usage` absent) one streamed chunk of one."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ErrorDetail(_Shape):
    message: str
    type: str
    param: str | None
    code: str | int | None


class ErrorResponse(_Shape):
    error: ErrorDetail
