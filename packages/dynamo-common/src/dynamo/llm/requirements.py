"""What an OpenAI request asks of the engine: fields refused outright, features it needs, and
the structured-output constraint it carries.

The request models accept every field a client may legitimately send; this module decides, per
field, whether it can be honoured. Three outcomes, never a fourth ("ignored"):

- refused for every model (`refuse_unsupported`): OpenAI features no engine here implements
  (audio output, web search, storing the completion, the deprecated `functions`, ...);
- needing an engine feature (`needed_features`): refused for a model whose engine does not
  declare it (`dynamo.llm.features.check_features`);
- honoured by the frontend for every engine (stop strings, n, tool-call parsing, ...).

`guided_decoding` folds the five ways to ask for structured output (`response_format`,
root-level `guided_*`, `nvext.guided_*`, and `tool_choice` `required` / a named function) into
the one wire field, `sampling_options.guided_decoding`.
"""

from __future__ import annotations

from typing import Any

from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.features import Feature, guided_feature
from dynamo.llm.protocols.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    NamedToolChoice,
    _CommonRequest,
)
from dynamo.llm.protocols.wire import GuidedDecodingOptions

_GUIDED_FIELDS = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")
#: Upstream's `nvext.annotations` the frontend answers (as named SSE events).
ANNOTATION_FORMATTED_PROMPT = "formatted_prompt"
ANNOTATION_TOKEN_IDS = "token_ids"
ANNOTATIONS = (ANNOTATION_FORMATTED_PROMPT, ANNOTATION_TOKEN_IDS)


def _refuse(param: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"'{param}' is not supported: {why}", param=param, code="unsupported_parameter"
    )


def refuse_unsupported(request: _CommonRequest) -> None:
    """Raise a 400 for a field set to something no engine here can do."""
    annotations = request.ext("annotations")
    if annotations:
        unknown = [a for a in annotations if a not in ANNOTATIONS]
        if unknown:
            raise _refuse(
                "nvext.annotations",
                f"unknown annotation {unknown[0]!r}; known: {', '.join(ANNOTATIONS)}",
            )
        if not request.stream:
            raise _refuse("nvext.annotations", "annotations are sent as SSE events: stream: true")
    if request.spaces_between_special_tokens is False:
        raise _refuse(
            "spaces_between_special_tokens",
            "special tokens are always decoded as the tokenizer joins them (true)",
        )
    if isinstance(request, ChatCompletionRequest):
        if request.modalities is not None and list(request.modalities) != ["text"]:
            raise _refuse("modalities", "only text output is produced")
        for name, why in (
            ("audio", "audio output is not produced"),
            ("web_search_options", "there is no web search"),
            ("functions", "use 'tools'"),
            ("function_call", "use 'tool_choice'"),
            ("verbosity", "the model's verbosity cannot be set"),
        ):
            if getattr(request, name) is not None:
                raise _refuse(name, why)
        if request.store:
            raise _refuse("store", "completions are not stored (send false or leave it out)")
    else:
        assert isinstance(request, CompletionRequest)
        if request.suffix:
            raise _refuse("suffix", "fill-in-the-middle is not implemented")


def needed_features(request: _CommonRequest, detokenized: bool = True) -> dict[Feature, str]:
    """The engine features this request needs, each with the request field that needs it.

    `detokenized`: the frontend tokenizes and detokenizes for this model (a Backend engine), so
    it applies the stop conditions and prompt forms itself; a text-level engine needs them.
    """
    needed: dict[Feature, str] = {}

    def need(feature: Feature, param: str, value: Any) -> None:
        if value is not None and feature not in needed:
            needed[feature] = param

    if not detokenized:
        need(Feature.STOP, "stop", request.stop or None)
        need(Feature.STOP_TOKEN_IDS, "stop_token_ids", request.stop_token_ids or None)
        need(Feature.MIN_TOKENS, _where(request, "min_tokens"), request.ext("min_tokens") or None)
        need(Feature.IGNORE_EOS, _where(request, "ignore_eos"), request.ext("ignore_eos") or None)
        need(
            Feature.INCLUDE_STOP_STR,
            _where(request, "include_stop_str_in_output"),
            request.ext("include_stop_str_in_output") or None,
        )
        need(Feature.SKIP_SPECIAL_TOKENS, "skip_special_tokens", request.skip_special_tokens)
        if request.nvext is not None:
            need(Feature.ANNOTATIONS, "nvext.annotations", request.nvext.annotations or None)
            need(Feature.RAW_PROMPT, "nvext.use_raw_prompt", request.nvext.use_raw_prompt or None)
            need(Feature.TOKEN_PROMPT, "nvext.token_data", request.nvext.token_data)
        if isinstance(request, CompletionRequest) and not isinstance(request.prompts()[0], str):
            need(Feature.TOKEN_PROMPT, "prompt", True)
        if isinstance(request, ChatCompletionRequest):
            if request.tool_choice != "none":
                need(Feature.TOOLS, "tools", request.tools or None)
            # A conversation with earlier tool calls needs an engine that renders them.
            turns = any(m.tool_calls or m.role == "tool" for m in request.messages)
            need(Feature.TOOLS, "messages", turns or None)
            need(Feature.TEMPLATE_ARGS, "chat_template_kwargs", request.chat_template_kwargs)
            need(Feature.TEMPLATE_ARGS, "chat_template_args", request.chat_template_args)
            need(Feature.TEMPLATE_ARGS, "reasoning_effort", request.reasoning_effort)

    need(Feature.TEMPERATURE, "temperature", request.temperature)
    need(Feature.TOP_P, "top_p", request.top_p)
    need(Feature.TOP_K, _where(request, "top_k"), request.ext("top_k"))
    need(Feature.MIN_P, _where(request, "min_p"), request.ext("min_p"))
    need(
        Feature.REPETITION_PENALTY,
        _where(request, "repetition_penalty"),
        request.ext("repetition_penalty"),
    )
    need(Feature.PRESENCE_PENALTY, "presence_penalty", request.presence_penalty)
    need(Feature.FREQUENCY_PENALTY, "frequency_penalty", request.frequency_penalty)
    need(Feature.SEED, "seed", request.seed)
    need(Feature.LOGIT_BIAS, "logit_bias", request.logit_bias or None)
    need(
        Feature.MAX_THINKING_TOKENS,
        "nvext.max_thinking_tokens",
        request.ext("max_thinking_tokens"),
    )
    if isinstance(request, ChatCompletionRequest):
        need(Feature.LOGPROBS, "logprobs", request.logprobs or None)
    else:
        assert isinstance(request, CompletionRequest)
        need(Feature.LOGPROBS, "logprobs", request.logprobs)
        if request.echo and request.logprobs is not None:
            need(Feature.PROMPT_LOGPROBS, "echo", True)
        if request.best_of is not None and request.best_of > request.choices_per_prompt:
            need(Feature.LOGPROBS, "best_of", True)  # the best are chosen by their log probability
    guided = guided_decoding(request)
    if guided is not None:
        kind = GuidedDecodingOptions.model_validate(guided).kinds()[0]
        need(guided_feature(kind), guided_param(request), True)
    return needed


def _where(request: _CommonRequest, name: str) -> str:
    """The spelling the client used for an extension field: root-level, else `nvext.<name>`."""
    return name if getattr(request, name, None) is not None else f"nvext.{name}"


def guided_param(request: _CommonRequest) -> str:
    """The request field that asked for structured output (for error messages)."""
    if isinstance(request, ChatCompletionRequest):
        if request.response_format is not None and request.response_format.type != "text":
            return "response_format"
        if request.tool_choice == "required" or isinstance(request.tool_choice, NamedToolChoice):
            return "tool_choice"
    for name in _GUIDED_FIELDS:
        if getattr(request, name) is not None:
            return name
        if request.nvext is not None and getattr(request.nvext, name) is not None:
            return f"nvext.{name}"
    return "response_format"


def guided_decoding(request: _CommonRequest) -> dict[str, Any] | None:
    """The wire's `guided_decoding` for this request, or None; a 400 when it asks for two."""
    sources: list[tuple[str, dict[str, Any]]] = []
    if isinstance(request, ChatCompletionRequest):
        fmt = request.response_format
        if fmt is not None and fmt.type == "json_object":
            sources.append(("response_format", {"json": {"type": "object"}}))
        elif fmt is not None and fmt.type == "json_schema":
            assert fmt.json_schema is not None
            schema = fmt.json_schema.schema_ or {"type": "object"}
            sources.append(("response_format", {"json": schema}))
        tool = tool_call_schema(request)
        if tool is not None:
            sources.append(("tool_choice", {"json": tool}))
    for name in _GUIDED_FIELDS:
        value = request.ext(name)
        if value is not None:
            sources.append((_where(request, name), {name.removeprefix("guided_"): value}))
    if not sources:
        return None
    if len(sources) > 1:
        names = ", ".join(name for name, _ in sources)
        raise InvalidRequestError(
            f"structured output asked for more than once ({names}); send one", param=sources[1][0]
        )
    param, guided = sources[0]
    if "json" in guided and isinstance(guided["json"], str):
        import orjson

        try:
            guided["json"] = orjson.loads(guided["json"])
        except orjson.JSONDecodeError as e:
            raise InvalidRequestError(
                f"{param} is not a valid JSON schema: {e}", param=param
            ) from None
    if "json" in guided and not isinstance(guided["json"], dict):
        raise InvalidRequestError(f"{param} must be a JSON schema object", param=param)
    if "choice" in guided and not guided["choice"]:
        raise InvalidRequestError(f"{param} must list at least one choice", param=param)
    backend = request.ext("guided_decoding_backend")
    if backend is not None:
        guided["backend"] = backend
    whitespace = request.ext("guided_whitespace_pattern")
    if whitespace is not None:
        guided["whitespace_pattern"] = whitespace
    return guided


def tool_call_schema(request: ChatCompletionRequest) -> dict[str, Any] | None:
    """The JSON schema that forces a tool call, for `tool_choice` `required` or a named function.

    A named function: the output is that function's arguments object. `required`: an array of
    `{"name", "parameters"}` calls, one of the tools each (at most one with
    `parallel_tool_calls: false`), as vLLM constrains it. `dynamo.llm.parsers.tool_calls.forced`
    turns the constrained text back into tool calls.
    """
    choice = request.tool_choice
    tools = request.tools or []
    if isinstance(choice, NamedToolChoice):
        tool = next(t for t in tools if t.function.name == choice.function.name)
        return tool.function.parameters or {"type": "object"}
    if choice != "required":
        return None
    one_of = [
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": [t.function.name]},
                "parameters": t.function.parameters or {"type": "object"},
            },
            "required": ["name", "parameters"],
        }
        for t in tools
    ]
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": one_of}}
    if request.parallel_tool_calls is False:
        schema["maxItems"] = 1
    return schema
