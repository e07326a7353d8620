"""OpenAI request → `PreprocessedRequest`: template, tokenize, assemble stop and sampling options.

Upstream's `OpenAIPreprocessor::preprocess_request`, with two fixes its users asked for: root-level
extensions win over `nvext` (#1705), and a prompt that does not fit the context is a 400 with a
clear message while `max_tokens` is clamped to what is left of the context (#1173, #6605).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from dynamo.llm.errors import ContextLengthExceededError, InvalidRequestError, TemplateError
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.protocols.openai import ChatCompletionRequest, CompletionRequest, _CommonRequest
from dynamo.llm.requirements import guided_decoding
from dynamo.llm.tokenizer_cache import SegmentedEncoder

if TYPE_CHECKING:
    from dynamo.llm.chat_template import PromptFormatter

#: Prompts at least this long (characters; about 2k tokens, 3 ms of tokenizing) are tokenized in
#: a worker thread with the GIL released, not on the event loop.
OFFLOAD_MIN_CHARS = 8192


# Content part types a token-level engine can be given: the text goes through the chat template.
_TEXT_PARTS = frozenset({"text"})
_MEDIA = {
    "image_url": "images",
    "input_image": "images",
    "image": "images",
    "input_audio": "audio",
    "audio_url": "audio",
    "video_url": "video",
}


def refuse_non_text_parts(request: ChatCompletionRequest, model: str) -> None:
    """A 400 naming the first content part that is not text: the prompt this preprocessor
    builds is text only, so an image would otherwise be dropped without a word."""
    for i, message in enumerate(request.messages):
        if not isinstance(message.content, list):
            continue
        for j, part in enumerate(message.content):
            kind = part.get("type")
            if kind in _TEXT_PARTS:
                continue
            what = _MEDIA.get(str(kind))
            reason = (
                f"model '{model}' does not take {what}"
                if what
                else f"content parts of type '{kind}' are not supported"
            )
            raise InvalidRequestError(reason, param=f"messages[{i}].content[{j}]")


def _non_empty(token_ids: list[int], param: str) -> list[int]:
    if not token_ids:
        raise InvalidRequestError("the prompt must not be empty", param=param)
    return token_ids


class OpenAIPreprocessor:
    """Turns OpenAI requests for one model into the token-level requests a Backend engine takes."""

    def __init__(self, card: ModelDeploymentCard):
        self.card = card
        self.tokenizer = card.tokenizer()
        self.encoder = SegmentedEncoder(self.tokenizer)
        self._formatter: PromptFormatter | None = None

    @property
    def formatter(self) -> PromptFormatter:
        """The chat template's renderer, made at the first chat request: the template module
        imports jinja2, a tenth of a frontend's start, and nothing renders before a request."""
        if self._formatter is None:
            from dynamo.llm.chat_template import PromptFormatter

            self._formatter = PromptFormatter(self.card)
        return self._formatter

    def render_chat(self, request: ChatCompletionRequest) -> str:
        """The prompt text for a chat request, as the model's chat template renders it."""
        refuse_non_text_parts(request, self.card.display_name)
        if request.ext("use_raw_prompt"):
            return "".join(m.text() for m in request.messages)
        messages = [m.model_dump(exclude_none=True) for m in request.messages]
        kwargs = {**(request.chat_template_kwargs or {}), **(request.chat_template_args or {})}
        if request.reasoning_effort is not None:
            # As vLLM: templates of reasoning models read it (gpt-oss); others ignore it.
            kwargs.setdefault("reasoning_effort", request.reasoning_effort)
        # Template arguments may also name these two; the request's own `tools` wins.
        add_generation_prompt = bool(kwargs.pop("add_generation_prompt", True))
        kwarg_tools = kwargs.pop("tools", None)
        tools = request.tools if request.tools is not None else kwarg_tools
        try:
            return self.formatter.render(
                messages, tools=tools, add_generation_prompt=add_generation_prompt, **kwargs
            )
        except TemplateError as e:
            raise InvalidRequestError(f"chat template error: {e}", param="messages") from e

    def preprocess_chat(self, request: ChatCompletionRequest) -> dict[str, Any]:
        ids = self._token_ids(self._chat_prompt(request), "messages")
        return self._assemble(request, ids, request.requested_max_tokens)

    def preprocess_completion(self, request: CompletionRequest) -> dict[str, Any]:
        ids = self._token_ids(self._completion_prompt(request), "prompt")
        return self._assemble(request, ids, request.requested_max_tokens)

    async def preprocess_chat_async(self, request: ChatCompletionRequest) -> dict[str, Any]:
        """`preprocess_chat` that tokenizes a long prompt off the event loop (see `encode_async`)."""
        ids = await self._token_ids_async(self._chat_prompt(request), "messages")
        return self._assemble(request, ids, request.requested_max_tokens)

    async def preprocess_completion_async(self, request: CompletionRequest) -> dict[str, Any]:
        """`preprocess_completion` that tokenizes a long prompt off the event loop."""
        ids = await self._token_ids_async(self._completion_prompt(request), "prompt")
        return self._assemble(request, ids, request.requested_max_tokens)

    def encode(self, text: str) -> list[int]:
        return self.encoder.encode(text)

    async def encode_async(self, text: str) -> list[int]:
        """Token ids of `text`, without holding up the event loop for a long prompt.

        Stretches of the prompt seen before come from the tokenizer cache
        (`dynamo.llm.tokenizer_cache`). What is left to encode, when long, goes to a worker
        thread: `Tokenizer.encode` keeps the GIL for the whole call (13 ms for an 8k-token
        prompt, during which every other stream of this frontend stalls) but `encode_batch`
        releases it. Short work stays inline: the thread hop would cost more than it saves.
        """
        encoder = self.encoder
        pieces, todo = encoder.plan(text)
        if sum(map(len, todo)) < OFFLOAD_MIN_CHARS:
            return encoder.assemble(pieces, encoder.encode_many(todo))
        encoded = await asyncio.to_thread(encoder.encode_many_released, todo)
        return encoder.assemble(pieces, encoded)

    def _chat_prompt(self, request: ChatCompletionRequest) -> str | list[int]:
        """The request's own token ids (`nvext.token_data`), else its rendered prompt text."""
        token_data = request.ext("token_data")
        if token_data:
            return self._in_vocabulary(token_data, "nvext.token_data")
        return self.render_chat(request)

    def _completion_prompt(self, request: CompletionRequest) -> str | list[int]:
        prompt = request.single_prompt()
        if isinstance(prompt, str):
            return prompt
        return self._in_vocabulary(prompt, "prompt")

    def _in_vocabulary(self, token_ids: list[int], param: str) -> list[int]:
        """The ids, refused with a 400 naming `param` when one is outside the vocabulary."""
        vocab = self.tokenizer.get_vocab_size(with_added_tokens=True)
        if any(not 0 <= t < vocab for t in token_ids):
            raise InvalidRequestError(f"{param} token ids must be in [0, {vocab})", param=param)
        return list(token_ids)

    def _token_ids(self, prompt: str | list[int], param: str) -> list[int]:
        return _non_empty(prompt if isinstance(prompt, list) else self.encode(prompt), param)

    async def _token_ids_async(self, prompt: str | list[int], param: str) -> list[int]:
        if isinstance(prompt, list):
            return _non_empty(prompt, param)
        return _non_empty(await self.encode_async(prompt), param)

    def _assemble(
        self, request: _CommonRequest, token_ids: list[int], max_tokens: int | None
    ) -> dict[str, Any]:
        ctx_len = self.card.context_length
        n = len(token_ids)
        if ctx_len:
            if n >= ctx_len:
                raise ContextLengthExceededError(
                    f"This model's maximum context length is {ctx_len} tokens, but the prompt "
                    f"has {n} tokens. Shorten the prompt.",
                    "prompt" if isinstance(request, CompletionRequest) else "messages",
                )
            room = ctx_len - n
            max_tokens = room if max_tokens is None else min(max_tokens, room)

        ignore_eos = bool(request.ext("ignore_eos"))
        stop_conditions: dict[str, Any] = {
            "max_tokens": max_tokens,
            "stop": request.stop,
            "stop_token_ids": request.stop_token_ids,
            "min_tokens": request.ext("min_tokens"),
            "ignore_eos": ignore_eos,
        }
        eos = [] if ignore_eos else list(self.card.eos_token_ids)
        if eos:
            stop_conditions["stop_token_ids_hidden"] = eos
        if request.ext("max_thinking_tokens") is not None:
            stop_conditions["max_thinking_tokens"] = request.ext("max_thinking_tokens")

        sampling = self._sampling(request)
        output = {
            "logprobs": _logprobs(request),
            "skip_special_tokens": request.skip_special_tokens,
        }
        if isinstance(request, CompletionRequest) and request.echo and request.logprobs is not None:
            output["prompt_logprobs"] = request.logprobs
        out: dict[str, Any] = {
            "model": request.model,
            "token_ids": token_ids,
            "stop_conditions": {k: v for k, v in stop_conditions.items() if v is not None},
            "sampling_options": {k: v for k, v in sampling.items() if v is not None},
            "output_options": {k: v for k, v in output.items() if v is not None},
            "eos_token_ids": eos,
            "annotations": list(request.ext("annotations") or []),
        }
        if request.nvext is not None and request.nvext.backend_instance_id is not None:
            out["backend_instance_id"] = request.nvext.backend_instance_id
        return out

    def _sampling(self, request: _CommonRequest) -> dict[str, Any]:
        """`sampling_options`: the request's, else the model's generation_config.json defaults
        (as vLLM applies them). `n` stays unset: the pipeline fans choices out itself."""
        temperature = request.temperature
        if request.nvext is not None and request.nvext.greed_sampling:
            temperature = 0.0
        sampling: dict[str, Any] = {
            "temperature": temperature,
            "top_p": request.top_p,
            "top_k": request.ext("top_k"),
            "min_p": request.ext("min_p"),
            "repetition_penalty": request.ext("repetition_penalty"),
            "presence_penalty": request.presence_penalty,
            "frequency_penalty": request.frequency_penalty,
            "seed": request.seed,
            "include_stop_str_in_output": request.ext("include_stop_str_in_output"),
            # JSON object keys are strings: token ids travel as "5", as OpenAI's clients send them.
            "logit_bias": _str_keys(request.logit_bias),
            "guided_decoding": guided_decoding(request),
        }
        defaults = self.card.gen_config or {}
        for name in _GENERATION_CONFIG_DEFAULTS:
            if sampling[name] is None and isinstance(defaults.get(name), int | float):
                sampling[name] = defaults[name]
        return sampling


#: Sampling fields a model's generation_config.json may give defaults for.
_GENERATION_CONFIG_DEFAULTS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


def _str_keys(bias: dict[int, float] | None) -> dict[str, float] | None:
    return {str(k): v for k, v in bias.items()} if bias else None


def _logprobs(request: _CommonRequest) -> int | None:
    """`output_options.logprobs`: top alternatives per token (0: the sampled one only)."""
    if isinstance(request, ChatCompletionRequest):
        return (request.top_logprobs or 0) if request.logprobs else None
    return getattr(request, "logprobs", None)
