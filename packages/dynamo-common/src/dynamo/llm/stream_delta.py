"""`StreamDelta`: one piece of one choice of an answer, as every input (HTTP, text, batch) sees it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dynamo.llm.logprobs import TokenLogprob
    from dynamo.llm.parsers import ToolCallDelta


@dataclass(slots=True)
class StreamDelta:
    """New text of choice `index`, and on its last piece the OpenAI finish reason.

    Token counts are cumulative over the whole request (every choice, every prompt), so the last
    delta a stream yields carries the request's usage.
    """

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: The stop string or stop token id that ended the answer (vLLM's `stop_reason`).
    stop_reason: str | int | None = None
    index: int = 0
    #: Text of the model's reasoning (`reasoning_content`), split out by a reasoning parser.
    reasoning: str = ""
    tool_calls: list[ToolCallDelta] | None = None
    #: Log probabilities of the tokens behind this piece (when the request asked for them).
    logprobs: list[TokenLogprob] | None = None
    #: Log probabilities of the prompt's tokens (completions `echo` with `logprobs`), on the
    #: first piece; the first token's `logprob` is None (nothing precedes it).
    prompt_logprobs: list[TokenLogprob] | None = None
    #: Upstream's `nvext.annotations` (`formatted_prompt`, `token_ids`), on the first piece; the
    #: HTTP layer sends them as named SSE events.
    annotations: dict[str, Any] | None = None
    #: Prompt tokens the engine served from its prefix cache, when it reports them.
    cached_tokens: int | None = None
    #: Tokens of reasoning (on the last piece, when a reasoning parser ran).
    reasoning_tokens: int | None = None
