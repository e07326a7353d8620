"""vLLM's `/tokenize` and `/detokenize` request shapes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel

from dynamo.llm.protocols.openai import STRICT_JSON


class _Strict(BaseModel):
    """Unknown fields, and values of the wrong JSON type, are refused."""

    model_config = STRICT_JSON


class TokenizeCompletionRequest(_Strict):
    """A prompt to tokenize as `/v1/completions` would (special tokens added by default)."""

    model: str | None = None
    prompt: str
    add_special_tokens: bool = True
    return_token_strs: bool = False


class TokenizeChatRequest(_Strict):
    """Chat messages to template and tokenize as `/v1/chat/completions` would."""

    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    add_special_tokens: bool = False
    return_token_strs: bool = False
    chat_template_kwargs: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None


class DetokenizeRequest(_Strict):
    model: str | None = None
    tokens: list[int]


class TokenizeResponse(BaseModel):
    model_config = ConfigDict(defer_build=True)  # see `openai.STRICT_JSON`

    count: int
    max_model_len: int | None
    tokens: list[int]
    token_strs: list[str] | None


class DetokenizeResponse(BaseModel):
    model_config = ConfigDict(defer_build=True)  # see `openai.STRICT_JSON`

    prompt: str


class TokenizeRequest(RootModel[TokenizeCompletionRequest | TokenizeChatRequest]):
    """`POST /tokenize` takes either shape (for the schema; the route tells them apart by
    `messages`)."""
