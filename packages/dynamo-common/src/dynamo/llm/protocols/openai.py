"""OpenAI chat and completions request models, with Dynamo's `nvext` and root-level extensions.

Requests are validated with pydantic (clients send all sorts of things). Responses and stream
chunks are built as dicts by `dynamo.llm.protocols.chunks` so the per-token path stays cheap; the
response models below document and test those shapes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The longest stop string a request may carry, in characters. The jail holding back a partial
# match keeps up to this much text per token; vLLM and OpenAI set no such limit, but a stop
# string longer than any answer only costs memory.
MAX_STOP_LENGTH = 1024


class _Lenient(BaseModel):
    """Unknown fields are kept, not rejected: OpenAI adds fields faster than anyone tracks them."""

    model_config = ConfigDict(extra="allow")


class NvExt(_Lenient):
    """Dynamo's `nvext` request extension (upstream `nvext.rs`)."""

    ignore_eos: bool | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    greed_sampling: bool | None = None
    use_raw_prompt: bool | None = None
    annotations: list[str] | None = None
    backend_instance_id: int | None = None
    token_data: list[int] | None = None
    max_thinking_tokens: int | None = None
    min_tokens: int | None = None
    include_stop_str_in_output: bool | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatMessage(_Lenient):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text; multi-part content is joined from its `text` parts."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")


class _CommonRequest(_Lenient):
    """Fields shared by chat and completions, including upstream's root-level `CommonExt`."""

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1, le=1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = None
    user: str | None = None
    nvext: NvExt | None = None
    # Root-level extensions (upstream CommonExt); they win over the same field in nvext.
    ignore_eos: bool | None = None
    min_tokens: int | None = Field(default=None, ge=0)
    top_k: int | None = None
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    include_stop_str_in_output: bool | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        if any(len(s) > MAX_STOP_LENGTH for s in stops):
            raise ValueError(f"a stop sequence may be at most {MAX_STOP_LENGTH} characters long")
        return [s for s in stops if s]

    def ext(self, name: str) -> Any:
        """A root-level extension field, falling back to the same field in `nvext`."""
        value = getattr(self, name, None)
        if value is None and self.nvext is not None:
            value = getattr(self.nvext, name, None)
        return value

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_CommonRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    chat_template_args: dict[str, Any] | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    @property
    def requested_max_tokens(self) -> int | None:
        return (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else self.max_tokens
        )


class CompletionRequest(_CommonRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool | None = None
    logprobs: int | None = None
    suffix: str | None = None
    best_of: int | None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> CompletionRequest:
        p = self.prompt
        if isinstance(p, list) and p and isinstance(p[0], (str, list)) and len(p) > 1:
            raise ValueError("batched prompts are not supported; send one prompt per request")
        if isinstance(p, list) and not p:
            raise ValueError("prompt must not be empty")
        return self

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    def single_prompt(self) -> str | list[int]:
        """The prompt as one string or one list of token ids."""
        p = self.prompt
        if isinstance(p, list) and p and isinstance(p[0], (str, list)):
            return p[0]  # type: ignore[return-value]
        return p  # type: ignore[return-value]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ModelCard(BaseModel):
    """One entry of `GET /v1/models`."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "dynamo"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
