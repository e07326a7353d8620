"""OpenAI chat and completions request models, with Dynamo's `nvext` and root-level extensions.

Nothing a client sends is silently ignored. Every field below is honoured, accepted because it
only describes the request (`user`, `metadata`, `store: false`, ...: see `DESCRIPTIVE`), or
refused with a 400 naming it. A field OpenAI does not define is a 400 too (`extra="forbid"`),
except in the documented extension namespaces: `nvext`, upstream Dynamo's root-level `CommonExt`
fields, and the vLLM sampling extras implemented here (`top_k`, `min_p`, `repetition_penalty`,
`stop_token_ids`, `skip_special_tokens`, `guided_*`, ...). Chat messages stay open: their extra
keys go to the chat template, which is where a model reads them.

Responses and stream chunks are built as dicts (the per-token path stays cheap); the response
models in `dynamo.llm.protocols.responses` document those shapes for the OpenAPI schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

# The longest stop string a request may carry, in characters. The jail holding back a partial
# match keeps up to this much text per token; vLLM and OpenAI set no such limit, but a stop
# string longer than any answer only costs memory.
MAX_STOP_LENGTH = 1024

#: Upstream's limit on stop strings (OpenAI's is 4).
MAX_STOP_STRINGS = 32
#: OpenAI's default `max_tokens` for legacy completions.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
#: The most choices one request may ask for (`n`, `best_of`), a guard against fan-out abuse.
MAX_CHOICES = 128


#: How every request model validates: JSON types as they are, no coercion. Pydantic's lax mode
#: took `"stream": 0` as false, `"max_tokens": "5"` as 5 and `"n": 1.0` as 1, where OpenAI and
#: vLLM answer 400 naming the field; strict mode refuses them the same way (a JSON integer is
#: still a valid number for a float field).
#:
#: Every model of the HTTP API is built at its first use rather than at import (`defer_build`):
#: building their validators was a twentieth of a frontend's start-up (issue 14), and the
#: frontend builds them right after it starts listening (`dynamo.frontend.http.warm_up`), so a
#: request finds them built.
STRICT_JSON = ConfigDict(extra="forbid", strict=True, defer_build=True)

#: A token id as a JSON object key (`logit_bias`): JSON keys are always strings, so this one
#: integer is parsed from its text.
TokenIdKey = Annotated[int, Strict(False)]


class _Strict(BaseModel):
    """Unknown fields are refused: a field we do not read must not look accepted. Values of the
    wrong JSON type are refused too (`STRICT_JSON`)."""

    model_config = STRICT_JSON


class NvExt(_Strict):
    """Dynamo's `nvext` request extension (upstream `nvext.rs`)."""

    ignore_eos: bool | None = None
    top_k: int | None = None
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    greed_sampling: bool | None = None
    use_raw_prompt: bool | None = None
    annotations: list[str] | None = None
    backend_instance_id: int | None = None
    token_data: list[int] | None = None
    max_thinking_tokens: int | None = Field(default=None, ge=0)
    min_tokens: int | None = Field(default=None, ge=0)
    include_stop_str_in_output: bool | None = None
    guided_json: Any = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None
    guided_decoding_backend: str | None = None
    guided_whitespace_pattern: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False
    #: vLLM's: with `include_usage`, every chunk also carries the usage so far.
    continuous_usage_stats: bool | None = None
    #: OpenAI's side-channel padding; accepted, no padding is added (it cannot change the answer).
    include_obfuscation: bool | None = None


class ChatMessage(BaseModel):
    """One message; keys beyond these reach the chat template unchanged."""

    model_config = ConfigDict(extra="allow", strict=True, defer_build=True)

    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _content_parts(cls, v: str | list[dict[str, Any]] | None) -> Any:
        """Each part has a string `type`, and a text part a string `text` (OpenAI's shape): a
        `"text": null` reached the templates and failed there as our 500."""
        if isinstance(v, list):
            for i, part in enumerate(v):
                if not isinstance(part.get("type"), str):
                    raise ValueError(f"content part {i} needs a string 'type'")
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise ValueError(f"content part {i} of type 'text' needs a string 'text'")
        return v

    def text(self) -> str:
        """The message's text; multi-part content is joined from its `text` parts."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, defer_build=True)

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    """A tool the model may call. Only `function` tools exist in chat completions."""

    model_config = STRICT_JSON

    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedToolChoiceFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"] = "function"
    function: NamedToolChoiceFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, defer_build=True)

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    """`text`, `json_object` (any JSON object) or `json_schema` (JSON matching the schema)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type json_schema needs a json_schema")
        return self


def _stop_list(v: str | list[str] | None) -> list[str] | None:
    if v is None:
        return None
    stops = [v] if isinstance(v, str) else v
    if len(stops) > MAX_STOP_STRINGS:
        raise ValueError(f"at most {MAX_STOP_STRINGS} stop sequences are allowed")
    if any(len(s) > MAX_STOP_LENGTH for s in stops):
        raise ValueError(f"a stop sequence may be at most {MAX_STOP_LENGTH} characters long")
    return [s for s in stops if s]


class _CommonRequest(_Strict):
    """Fields shared by chat and completions, including upstream's root-level `CommonExt`."""

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    # At least 1, as OpenAI and vLLM require: 0 returned a token (llama.cpp) or the whole text.
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[TokenIdKey, float] | None = None
    seed: int | None = None
    # Descriptive: they cannot change the answer; accepted (and `user` logged).
    user: str | None = None
    nvext: NvExt | None = None
    # Root-level extensions (upstream CommonExt); they win over the same field in nvext.
    ignore_eos: bool | None = None
    min_tokens: int | None = Field(default=None, ge=0)
    top_k: int | None = None
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    include_stop_str_in_output: bool | None = None
    # vLLM's extras that the frontend implements for every engine.
    stop_token_ids: list[int] | None = None
    skip_special_tokens: bool | None = None
    spaces_between_special_tokens: bool | None = None
    # vLLM's structured-output spellings at the root (also accepted under nvext).
    guided_json: Any = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None
    guided_decoding_backend: str | None = None
    guided_whitespace_pattern: str | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str] | None:
        return _stop_list(v)

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, v: dict[int, float] | None) -> dict[int, float] | None:
        if v and any(not -100.0 <= b <= 100.0 for b in v.values()):
            raise ValueError("logit_bias values must be in [-100, 100]")
        return v

    def ext(self, name: str) -> Any:
        """A root-level extension field, falling back to the same field in `nvext`."""
        value = getattr(self, name, None)
        if value is None and self.nvext is not None:
            value = getattr(self.nvext, name, None)
        return value

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def continuous_usage(self) -> bool:
        """Usage on every streamed chunk (vLLM's `continuous_usage_stats`, with `include_usage`)."""
        return self.include_usage and bool(self.stream_options.continuous_usage_stats)  # type: ignore[union-attr]

    @property
    def choices_per_prompt(self) -> int:
        return self.n or 1


class ChatCompletionRequest(_CommonRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    #: Passed to the chat template (reasoning models read it), as vLLM does.
    reasoning_effort: str | None = None
    chat_template_args: dict[str, Any] | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    # Descriptive OpenAI fields: accepted, no effect on the answer.
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    prediction: dict[str, Any] | None = None
    # OpenAI fields we cannot honour: refused when set (see `refused_fields`).
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: Any = None
    verbosity: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {t.function.name for t in self.tools or ()}
            if self.tool_choice.function.name not in names:
                raise ValueError(
                    f"tool_choice names '{self.tool_choice.function.name}', which is not in tools"
                )
        if self.tool_choice in ("required",) and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        return self

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
    logprobs: int | None = Field(default=None, ge=0, le=20)
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1, le=MAX_CHOICES)

    @model_validator(mode="after")
    def _prompts(self) -> CompletionRequest:
        p = self.prompt
        if isinstance(p, list) and not p:
            raise ValueError("prompt must not be empty")
        if isinstance(p, list) and any(isinstance(x, list) and not x for x in p):
            raise ValueError("prompt must not contain an empty token list")
        if self.best_of is not None and self.best_of < self.choices_per_prompt:
            raise ValueError("best_of must be at least n")
        if self.best_of is not None and self.best_of > 1 and self.stream:
            raise ValueError("best_of > 1 cannot be streamed")
        if len(self.prompts()) * (self.best_of or self.choices_per_prompt) > MAX_CHOICES:
            raise ValueError(f"a request may produce at most {MAX_CHOICES} choices")
        return self

    @property
    def requested_max_tokens(self) -> int:
        return COMPLETIONS_DEFAULT_MAX_TOKENS if self.max_tokens is None else self.max_tokens

    def prompts(self) -> list[str | list[int]]:
        """The prompts of this request: one string or token list each (a batch gives several)."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and isinstance(p[0], int):
            return [p]  # type: ignore[list-item]
        return list(p)  # type: ignore[arg-type]

    def single_prompt(self) -> str | list[int]:
        """The first prompt as one string or one list of token ids."""
        return self.prompts()[0]


class ModelCard(BaseModel):
    """One entry of `GET /v1/models`."""

    model_config = ConfigDict(defer_build=True)

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "dynamo"
    #: The canonical name, for an alias (`--served-model-name a b`: b's root is a), as vLLM.
    root: str | None = None
    parent: str | None = None
    #: The context length in tokens, as vLLM reports it.
    max_model_len: int | None = None


class ModelList(BaseModel):
    model_config = ConfigDict(defer_build=True)

    object: Literal["list"] = "list"
    data: list[ModelCard]
