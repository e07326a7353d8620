"""The Anthropic Messages request (`POST /v1/messages`), validated strictly.

Unknown fields and known ones we cannot honour (images, documents, server tools, MCP servers)
are refused with an Anthropic-shaped 400 naming them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dynamo.llm.protocols.openai import STRICT_JSON


class _Strict(BaseModel):
    """Unknown fields, and values of the wrong JSON type, are refused."""

    model_config = STRICT_JSON


class Message(_Strict):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class ToolChoice(_Strict):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _named(self) -> ToolChoice:
        if self.type == "tool" and not self.name:
            raise ValueError("tool_choice of type 'tool' needs a name")
        return self


class Thinking(_Strict):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(default=None, ge=1)


class Metadata(_Strict):
    user_id: str | None = None


class JSONOutputFormat(_Strict):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, defer_build=True)


class OutputConfig(_Strict):
    """`output_config`: structured output (`format`) and reasoning effort."""

    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: JSONOutputFormat | None = None


#: Fields of the Messages API this server cannot honour; sending one is a 400.
UNSUPPORTED = {
    "container": "containers are not supported",
    "diagnostics": "prompt-cache diagnostics are not supported",
    "mcp_servers": "MCP servers are not supported",
    "context_management": "context_management is not supported",
}


class MessagesRequest(_Strict):
    model: str
    max_tokens: int = Field(ge=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1)
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    metadata: Metadata | None = None
    output_config: OutputConfig | None = None
    # Descriptive only: where and how fast Anthropic would run it, who asks, and a prompt-cache
    # marker (the engine's prefix cache, where it has one, works without being told).
    service_tier: str | None = None
    inference_geo: str | None = None
    speed: Literal["standard", "fast"] | None = None
    user_profile_id: str | None = None
    workspace_id: str | None = None
    cache_control: dict[str, Any] | None = None
    diagnostics: Any = None
    container: Any = None
    mcp_servers: Any = None
    context_management: Any = None

    @model_validator(mode="after")
    def _supported(self) -> MessagesRequest:
        for name, why in UNSUPPORTED.items():
            if getattr(self, name) is not None:
                raise ValueError(f"{name}: {why}")
        return self


class CountTokensRequest(_Strict):
    """`POST /v1/messages/count_tokens`: the prompt part of a Messages request."""

    model: str
    messages: list[Message] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    cache_control: dict[str, Any] | None = None


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)


class MessageObject(_Open):
    """What `POST /v1/messages` answers."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    stop_sequence: str | None
    usage: dict[str, int]


class MessageStreamEvent(_Open):
    """One `event: <type>` of a streamed message."""

    type: str


class TokenCount(_Open):
    input_tokens: int


class AnthropicErrorDetail(_Open):
    type: str
    message: str


class AnthropicError(_Open):
    """Anthropic's error body."""

    type: Literal["error"]
    error: AnthropicErrorDetail
