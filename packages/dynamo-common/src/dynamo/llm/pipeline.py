"""The pipeline every input (HTTP, text, batch) talks to: one `ServedModel` per model name.

preprocess → engine → detokenize, behind one interface that yields `StreamDelta`s. The engine is
anything with `generate(request: dict, context) -> AsyncIterator[dict]`: an in-process `Engine`, or
a router client that sends the request to a worker over the network. The pipeline does not know
which, and that is the point.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

from dynamo.llm.decoder import Decoder, TokenPieces
from dynamo.llm.engine import AsyncEngine
from dynamo.llm.errors import EngineFailedError, InvalidRequestError
from dynamo.llm.fanout import best_of_choices, echo_prompt, fan_out, for_choice
from dynamo.llm.features import Feature, check_features, parse_features
from dynamo.llm.logprobs import TokenTexts, from_engine, from_openai, prompt_from_engine
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.model_type import ModelType
from dynamo.llm.postprocess import OutputParsers, check_tools, parse_chat_stream, parsers_for
from dynamo.llm.preprocessor import OpenAIPreprocessor
from dynamo.llm.protocols.openai import ChatCompletionRequest, CompletionRequest
from dynamo.llm.protocols.wire import FinishReason
from dynamo.llm.requirements import (
    ANNOTATION_FORMATTED_PROMPT,
    ANNOTATION_TOKEN_IDS,
    needed_features,
    refuse_unsupported,
)
from dynamo.llm.stream_delta import StreamDelta
from dynamo.runtime.context import Context

__all__ = ["AsyncEngine", "BackendModel", "OpenAIEngineModel", "ServedModel", "StreamDelta"]


class ServedModel:
    """A model as the inputs see it: a name, and chat/completion streams of `StreamDelta`.

    `chat` and `completion` check the request against what the model can do (fields no engine
    honours, features its engine does not declare, tools without a parser: each a 400 naming the
    field), fan `n`, `best_of` and lists of prompts out into one engine request per choice, and
    split reasoning and tool calls out of chat answers. Subclasses stream one choice
    (`_chat_one`, `_completion_one`).
    """

    def __init__(
        self,
        name: str,
        card: ModelDeploymentCard | None,
        model_type: ModelType,
        features: frozenset[Feature] | None = None,
        parsers: OutputParsers | None = None,
    ):
        self.name = name
        self.card = card
        self.model_type = model_type
        if features is None:
            features = parse_features(card.features if card is not None else None)
        self.features = features
        self.parsers = parsers if parsers is not None else parsers_for(card)

    def chat(self, request: ChatCompletionRequest, context: Context) -> AsyncIterator[StreamDelta]:
        """Stream the answer to a chat request (its choices interleaved, by `index`)."""
        self._check(request)
        check_tools(request, self.parsers)

        def one(req: ChatCompletionRequest, ctx: Context) -> AsyncIterator[StreamDelta]:
            return parse_chat_stream(self._chat_one(req, ctx), req, self.parsers, self.count_tokens)

        n = request.choices_per_prompt
        if n == 1:
            return one(request, context)
        subs = [(i, 0, for_choice(request, i, {})) for i in range(n)]
        return fan_out(subs, one, context)

    def completion(
        self, request: CompletionRequest, context: Context
    ) -> AsyncIterator[StreamDelta]:
        """Stream the answer to a completions request: `n` choices per prompt, prompt-major."""
        self._check(request)
        prompts = request.prompts()
        n = request.choices_per_prompt
        best_of = request.best_of or n
        if len(prompts) == 1 and best_of == 1:
            return self._echoed(request, context)
        if best_of > n:
            return best_of_choices(request, prompts, n, best_of, self._echoed, context)
        subs = [
            (p * n + j, p, for_choice(request, j, {"prompt": prompt}))
            for p, prompt in enumerate(prompts)
            for j in range(n)
        ]
        return fan_out(subs, self._echoed, context)

    def _check(self, request: ChatCompletionRequest | CompletionRequest) -> None:
        refuse_unsupported(request)
        engine = self.card.runtime_config.get("engine") if self.card is not None else None
        needed = needed_features(request, detokenized=self.model_type is ModelType.Backend)
        check_features(needed, self.features, self.name, engine)

    def _echoed(self, request: CompletionRequest, context: Context) -> AsyncIterator[StreamDelta]:
        stream = self._completion_one(request, context)
        return echo_prompt(stream, self._prompt_text(request)) if request.echo else stream

    def _prompt_text(self, request: CompletionRequest) -> str:
        prompt = request.single_prompt()
        if isinstance(prompt, str):
            return prompt
        if self.card is None or not self.card.has_tokenizer():
            return ""
        return self.card.tokenizer().decode(list(prompt), skip_special_tokens=False)

    def _chat_one(
        self, request: ChatCompletionRequest, context: Context
    ) -> AsyncIterator[StreamDelta]:
        """Stream one choice of a chat answer (models that chat override this)."""
        raise InvalidRequestError(f"model '{self.name}' does not serve chat completions")

    def _completion_one(
        self, request: CompletionRequest, context: Context
    ) -> AsyncIterator[StreamDelta]:
        """Stream one choice of a completion of the request's first prompt."""
        raise InvalidRequestError(f"model '{self.name}' does not serve completions")

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` with this model's tokenizer (0 when it has none)."""
        if self.card is None or not self.card.has_tokenizer():
            return 0
        return len(self.card.tokenizer().encode(text, add_special_tokens=False).ids)


def _engine_error(out: dict[str, Any]) -> str | None:
    """The error message an engine delta carries, in any of the spellings upstream uses."""
    reason = out.get("finish_reason")
    if isinstance(reason, dict) and "error" in reason:
        return str(reason["error"])
    if reason == "error":
        return str(out.get("error") or out.get("text") or "the engine failed")
    if out.get("event") == "error":
        return str(out.get("comment") or out.get("data") or "the engine failed")
    return None


class BackendModel(ServedModel):
    """A Backend engine behind Dynamo's own preprocessing and detokenization."""

    def __init__(
        self,
        name: str,
        card: ModelDeploymentCard,
        engine: AsyncEngine,
        features: frozenset[Feature] | None = None,
        parsers: OutputParsers | None = None,
    ):
        super().__init__(name, card, ModelType.Backend, features, parsers)
        self.engine = engine
        self.preprocessor = OpenAIPreprocessor(card)
        self.tokenizer = self.preprocessor.tokenizer
        #: Each token's text, looked up instead of decoded where the tokenizer allows it.
        self._pieces = TokenPieces.of(self.tokenizer)
        self._texts: TokenTexts | None = None

    def _chat_one(
        self, request: ChatCompletionRequest, context: Context
    ) -> AsyncIterator[StreamDelta]:
        return self._run(partial(self.preprocessor.preprocess_chat_async, request), context)

    def _completion_one(
        self, request: CompletionRequest, context: Context
    ) -> AsyncIterator[StreamDelta]:
        return self._run(partial(self.preprocessor.preprocess_completion_async, request), context)

    async def _run(
        self, preprocess: Callable[[], Awaitable[dict[str, Any]]], context: Context
    ) -> AsyncIterator[StreamDelta]:
        # Preprocessing runs on the first pull of the stream (the HTTP layer pulls once before
        # it answers, so a bad request is still a 400), where a long prompt can be tokenized
        # without blocking the loop.
        preq = await preprocess()
        prompt_tokens = len(preq["token_ids"])
        decoder = Decoder.from_request(self.tokenizer, preq, self._pieces)
        output_options = preq.get("output_options") or {}
        texts = self._token_texts() if output_options.get("logprobs") is not None else None
        as_ids = bool(output_options.get("return_tokens_as_token_ids"))
        cached: int | None = None
        prompt_logprobs = None  # sent once, with the first piece of the answer
        annotations = self._annotations(preq)  # the same
        stream = self.engine.generate(preq, context)
        engine_reason: FinishReason | None = None
        try:
            async for out in stream:
                token_ids = out.get("token_ids")
                # Most deltas are new tokens and nothing else: no error, usage, log
                # probabilities or finish to look for (per token, that look costs).
                plain = len(out) == 1 and token_ids is not None
                if not plain:
                    error = _engine_error(out)
                    if error is not None:
                        raise EngineFailedError(error)
                    cached = _cached_tokens(out, cached)
                    if texts is not None and out.get("prompt_logprobs") is not None:
                        prompt_logprobs = prompt_from_engine(
                            out["prompt_logprobs"], preq["token_ids"], texts, as_ids
                        )
                if token_ids:
                    before = decoder.completion_tokens
                    result = decoder.step(token_ids)
                    logprobs = None
                    if texts is not None:
                        used = decoder.completion_tokens - before
                        if result.finish_reason is FinishReason.EOS:
                            used -= 1  # the hidden EOS is not part of the answer
                        logprobs = from_engine(out, used, texts, as_ids)
                    if result.finish_reason is not None:
                        # A local stop (stop string, EOS, length): tell the engine to stop.
                        context.stop_generating()
                        yield StreamDelta(
                            result.text,
                            result.finish_reason.to_openai(),
                            prompt_tokens,
                            decoder.completion_tokens,
                            result.stop_reason,
                            logprobs=logprobs,
                            cached_tokens=cached,
                            prompt_logprobs=prompt_logprobs,
                            annotations=annotations,
                        )
                        return
                    if result.text or logprobs:
                        yield StreamDelta(
                            result.text,
                            None,
                            prompt_tokens,
                            decoder.completion_tokens,
                            logprobs=logprobs,
                            cached_tokens=cached,
                            prompt_logprobs=prompt_logprobs,
                            annotations=annotations,
                        )
                        prompt_logprobs = annotations = None
                reason = None if plain else out.get("finish_reason")
                if reason is not None:
                    engine_reason = FinishReason.parse(reason)
                    break
        finally:
            await _aclose(stream)
        if context.is_killed():
            return
        reason_text = (engine_reason or FinishReason.STOP).to_openai()
        yield StreamDelta(
            decoder.finish(),
            reason_text,
            prompt_tokens,
            decoder.completion_tokens,
            cached_tokens=cached,
            prompt_logprobs=prompt_logprobs,
            annotations=annotations,
        )

    def _annotations(self, preq: dict[str, Any]) -> dict[str, Any] | None:
        """Upstream's `nvext.annotations`: the prompt as the model saw it, and its token ids."""
        names = preq.get("annotations")
        if not names:
            return None
        values: dict[str, Any] = {}
        if ANNOTATION_FORMATTED_PROMPT in names:
            values[ANNOTATION_FORMATTED_PROMPT] = self.tokenizer.decode(
                preq["token_ids"], skip_special_tokens=False
            )
        if ANNOTATION_TOKEN_IDS in names:
            values[ANNOTATION_TOKEN_IDS] = list(preq["token_ids"])
        return values

    def _token_texts(self) -> TokenTexts:
        if self._texts is None:
            self._texts = TokenTexts(self.tokenizer)
        return self._texts


def _cached_tokens(out: dict[str, Any], current: int | None) -> int | None:
    """`completion_usage.prompt_tokens_details.cached_tokens` of an engine delta, if it has it."""
    usage = out.get("completion_usage")
    if not usage:
        return current
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens")
    return current if cached is None else int(cached)


class OpenAIEngineModel(ServedModel):
    """A Chat or Completion engine: it takes OpenAI requests and streams OpenAI chunks itself."""

    def __init__(
        self,
        name: str,
        card: ModelDeploymentCard | None,
        engine: AsyncEngine,
        serves: frozenset[ModelType],
        features: frozenset[Feature] | None = None,
        parsers: OutputParsers | None = None,
    ):
        super().__init__(
            name,
            card,
            ModelType.Chat if ModelType.Chat in serves else ModelType.Completion,
            features,
            parsers,
        )
        self.engine = engine
        self.serves = serves

    def chat(self, request: ChatCompletionRequest, context: Context) -> AsyncIterator[StreamDelta]:
        if ModelType.Chat not in self.serves:
            raise InvalidRequestError(f"model '{self.name}' does not serve chat completions")
        return super().chat(request, context)

    def completion(
        self, request: CompletionRequest, context: Context
    ) -> AsyncIterator[StreamDelta]:
        if ModelType.Completion not in self.serves:
            raise InvalidRequestError(f"model '{self.name}' does not serve completions")
        return super().completion(request, context)

    def _chat_one(
        self, request: ChatCompletionRequest, context: Context
    ) -> AsyncIterator[StreamDelta]:
        prompt = "".join(m.text() for m in request.messages)
        return self._run(_engine_body(request), prompt, "delta", context)

    def _completion_one(
        self, request: CompletionRequest, context: Context
    ) -> AsyncIterator[StreamDelta]:
        prompt = request.single_prompt()
        text = prompt if isinstance(prompt, str) else ""
        body = _engine_body(request)
        body["prompt"] = prompt
        return self._run(body, text, "text", context)

    async def _run(
        self, body: dict[str, Any], prompt: str, field: str, context: Context
    ) -> AsyncIterator[StreamDelta]:
        body["stream"] = True
        prompt_tokens = self.count_tokens(prompt)
        completion_tokens = 0
        finish: str | None = None
        stream = self.engine.generate(body, context)
        try:
            async for chunk in stream:
                error = _engine_error(chunk)
                if error is not None:
                    raise EngineFailedError(error)
                usage = chunk.get("usage")
                if usage:
                    prompt_tokens = usage.get("prompt_tokens", prompt_tokens)
                    completion_tokens = usage.get("completion_tokens", completion_tokens)
                for choice in chunk.get("choices") or ():
                    piece = choice.get(field)
                    text = (piece.get("content") if isinstance(piece, dict) else piece) or ""
                    if text and not usage:
                        completion_tokens += 1
                    finish = choice.get("finish_reason") or finish
                    logprobs = from_openai(choice.get("logprobs"))
                    if text or finish or logprobs:
                        yield StreamDelta(
                            text, finish, prompt_tokens, completion_tokens, logprobs=logprobs
                        )
                if finish:
                    return
        finally:
            await _aclose(stream)
        if not context.is_killed():
            yield StreamDelta("", "stop", prompt_tokens, completion_tokens)


def _engine_body(request: ChatCompletionRequest | CompletionRequest) -> dict[str, Any]:
    """The OpenAI body a text-level engine gets: JSON-safe (it may cross the network), with
    `nvext.greed_sampling` applied as the frontend applies it for token-level engines."""
    body = request.model_dump(mode="json", exclude_none=True, by_alias=True)
    if request.nvext is not None and request.nvext.greed_sampling:
        body["temperature"] = 0.0
    return body


async def _aclose(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
