"""The pipeline every input (HTTP, text, batch) talks to: one `ServedModel` per model name.

preprocess → engine → detokenize, behind one interface that yields `StreamDelta`s. The engine is
anything with `generate(request: dict, context) -> AsyncIterator[dict]`: an in-process `Engine`, or
a router client that sends the request to a worker over the network. The pipeline does not know
which, and that is the point.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from dynamo.llm.decoder import Decoder
from dynamo.llm.errors import EngineFailedError, InvalidRequestError
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.model_type import ModelType
from dynamo.llm.preprocessor import OpenAIPreprocessor
from dynamo.llm.protocols.openai import ChatCompletionRequest, CompletionRequest
from dynamo.llm.protocols.wire import FinishReason
from dynamo.runtime.context import Context


class AsyncEngine(Protocol):
    """Anything that streams responses for a request dict: an Engine or a router client."""

    def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]: ...


@dataclass(slots=True)
class StreamDelta:
    """A piece of the answer: new text, and on the last piece the OpenAI finish reason."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: The stop string or stop token id that ended the answer (vLLM's `stop_reason`).
    stop_reason: str | int | None = None


class ServedModel(abc.ABC):
    """A model as the inputs see it: a name, and chat/completion streams of `StreamDelta`."""

    def __init__(self, name: str, card: ModelDeploymentCard | None, model_type: ModelType):
        self.name = name
        self.card = card
        self.model_type = model_type

    @abc.abstractmethod
    def chat(self, request: ChatCompletionRequest, context: Context) -> AsyncIterator[StreamDelta]:
        """Stream the answer to a chat request."""

    @abc.abstractmethod
    def completion(
        self, request: CompletionRequest, context: Context
    ) -> AsyncIterator[StreamDelta]:
        """Stream the answer to a completions request."""

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

    def __init__(self, name: str, card: ModelDeploymentCard, engine: AsyncEngine):
        super().__init__(name, card, ModelType.Backend)
        self.engine = engine
        self.preprocessor = OpenAIPreprocessor(card)
        self.tokenizer = self.preprocessor.tokenizer

    def chat(self, request: ChatCompletionRequest, context: Context) -> AsyncIterator[StreamDelta]:
        return self._run(partial(self.preprocessor.preprocess_chat_async, request), context)

    def completion(
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
        decoder = Decoder.from_request(self.tokenizer, preq)
        stream = self.engine.generate(preq, context)
        engine_reason: FinishReason | None = None
        try:
            async for out in stream:
                error = _engine_error(out)
                if error is not None:
                    raise EngineFailedError(error)
                token_ids = out.get("token_ids")
                if token_ids:
                    result = decoder.step(token_ids)
                    if result.finish_reason is not None:
                        # A local stop (stop string, EOS, length): tell the engine to stop.
                        context.stop_generating()
                        yield StreamDelta(
                            result.text,
                            result.finish_reason.to_openai(),
                            prompt_tokens,
                            decoder.completion_tokens,
                            result.stop_reason,
                        )
                        return
                    if result.text:
                        yield StreamDelta(
                            result.text, None, prompt_tokens, decoder.completion_tokens
                        )
                reason = out.get("finish_reason")
                if reason is not None:
                    engine_reason = FinishReason.parse(reason)
                    break
        finally:
            await _aclose(stream)
        if context.is_killed():
            return
        reason_text = (engine_reason or FinishReason.STOP).to_openai()
        yield StreamDelta(decoder.finish(), reason_text, prompt_tokens, decoder.completion_tokens)


class OpenAIEngineModel(ServedModel):
    """A Chat or Completion engine: it takes OpenAI requests and streams OpenAI chunks itself."""

    def __init__(
        self,
        name: str,
        card: ModelDeploymentCard | None,
        engine: AsyncEngine,
        serves: frozenset[ModelType],
    ):
        super().__init__(
            name, card, ModelType.Chat if ModelType.Chat in serves else ModelType.Completion
        )
        self.engine = engine
        self.serves = serves

    def chat(self, request: ChatCompletionRequest, context: Context) -> AsyncIterator[StreamDelta]:
        if ModelType.Chat not in self.serves:
            raise InvalidRequestError(f"model '{self.name}' does not serve chat completions")
        prompt = "".join(m.text() for m in request.messages)
        return self._run(request.model_dump(exclude_none=True), prompt, "delta", context)

    def completion(
        self, request: CompletionRequest, context: Context
    ) -> AsyncIterator[StreamDelta]:
        if ModelType.Completion not in self.serves:
            raise InvalidRequestError(f"model '{self.name}' does not serve completions")
        prompt = request.single_prompt()
        text = prompt if isinstance(prompt, str) else ""
        return self._run(request.model_dump(exclude_none=True), text, "text", context)

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
                    if text or finish:
                        yield StreamDelta(text, finish, prompt_tokens, completion_tokens)
                if finish:
                    return
        finally:
            await _aclose(stream)
        if not context.is_killed():
            yield StreamDelta("", "stop", prompt_tokens, completion_tokens)


async def _aclose(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
