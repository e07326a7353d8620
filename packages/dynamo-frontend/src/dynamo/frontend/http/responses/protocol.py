"""The OpenAI Responses API request (`POST /v1/responses`), validated strictly.

A field we do not know is refused, and so is a known one we cannot honour (background mode,
hosted tools, images): a client learns at once what this server does not do instead of getting
an answer that quietly ignored part of its request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dynamo.llm.protocols.openai import STRICT_JSON


class _Strict(BaseModel):
    """Unknown fields, and values of the wrong JSON type, are refused."""

    model_config = STRICT_JSON


class TextFormat(_Strict):
    """`text.format`: plain text, any JSON object, or JSON matching a schema."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, defer_build=True)

    @model_validator(mode="after")
    def _schema_needed(self) -> TextFormat:
        if self.type == "json_schema" and (self.schema_ is None or not self.name):
            raise ValueError("text.format of type json_schema needs a name and a schema")
        return self

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.type == "json_schema":
            out.update(name=self.name, schema=self.schema_, strict=self.strict)
            if self.description is not None:
                out["description"] = self.description
        return out


class TextConfig(_Strict):
    format: TextFormat = Field(default_factory=TextFormat)
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_Strict):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(_Strict):
    include_obfuscation: bool | None = None


#: Fields of the Responses API this server cannot honour, with why; sending one is a 400.
UNSUPPORTED = {
    "background": "background mode is not supported; send the request without it",
    "conversation": "conversations are not supported; use previous_response_id",
    "prompt": "stored prompt templates are not supported",
    "max_tool_calls": "max_tool_calls is not supported",
    "top_logprobs": "log probabilities are not supported on /v1/responses yet",
    "context_management": "context_management is not supported",
}


#: What `include` may ask for: reasoning items carry `encrypted_content` (here not encrypted,
#: only sealed: the reasoning text the client sees anyway, in a form it hands back as is), so a
#: client that does not store responses (`store: false`) can send the reasoning back.
INCLUDABLE = {"reasoning.encrypted_content"}


class ResponsesRequest(_Strict):
    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    store: bool = True
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    include: list[str] | None = None
    truncation: Literal["disabled", "auto"] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    service_tier: str | None = None
    # Known but refused (see UNSUPPORTED); declared so the error names the real reason.
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None
    max_tool_calls: int | None = None
    top_logprobs: int | None = None
    context_management: Any = None

    @field_validator("stream", "store", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        """`null` means the default, as OpenAI takes it (`store` true, `stream` false)."""
        assert info.field_name is not None
        return cls.model_fields[info.field_name].default if value is None else value

    @model_validator(mode="after")
    def _supported(self) -> ResponsesRequest:
        for name, why in UNSUPPORTED.items():
            value = getattr(self, name)
            if value not in (None, False, 0):
                raise ValueError(f"{name}: {why}")
        if self.truncation == "auto":
            raise ValueError(
                "truncation: 'auto' is not supported; a conversation longer than the context "
                "is refused (truncation 'disabled')"
            )
        unknown = sorted(set(self.include or ()) - INCLUDABLE)
        if unknown:
            raise ValueError(
                f"include: {', '.join(unknown)} not supported ({', '.join(INCLUDABLE)} is)"
            )
        if isinstance(self.input, str) and not self.input:
            raise ValueError("input must not be empty")
        return self


class InputItemsQuery(_Strict):
    """`GET /v1/responses/{id}/input_items` query: OpenAI's paging (`include` is refused).
    Lax: a query string's values are all text (`limit=5`)."""

    model_config = ConfigDict(extra="forbid", strict=False, defer_build=True)

    order: Literal["asc", "desc"] = "desc"
    limit: int = Field(default=20, ge=1, le=100)
    after: str | None = None


class _Open(BaseModel):
    """A response shape for `/openapi.json`: its named fields, and room for OpenAI's others."""

    model_config = ConfigDict(extra="allow", defer_build=True)


class ResponseObject(_Open):
    """What `POST /v1/responses` answers (and `response.*` events carry)."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None
    error: dict[str, Any] | None
    incomplete_details: dict[str, Any] | None
    previous_response_id: str | None
    store: bool


class ResponseStreamEvent(_Open):
    """One `event: <type>` of a streamed response."""

    type: str
    sequence_number: int


class ResponseDeleted(_Open):
    """What `DELETE /v1/responses/{id}` answers."""

    id: str
    object: Literal["response.deleted"]
    deleted: bool


class InputItemList(_Open):
    """What `GET /v1/responses/{id}/input_items` answers."""

    object: Literal["list"]
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool
