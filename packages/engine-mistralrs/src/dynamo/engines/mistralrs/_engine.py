"""`MistralRsEngine`: OpenAI requests in, OpenAI chunks out, through `mistralrs.Runner`."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

from dynamo.engines.mistralrs._completion import SLICE_TOKENS, sliced_completion
from dynamo.engines.mistralrs._options import chat_request_kwargs, runner_kwargs, which
from dynamo.llm import Context, Engine, EngineConfig, EngineError, ModelType
from dynamo.llm.chunks import ResponseBuilder
from dynamo.llm.features import Feature
from dynamo.llm.stream_delta import StreamDelta
from dynamo.llm.threaded import stream_from_thread

log = logging.getLogger(__name__)


def _usage(usage: Any) -> dict[str, int] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


class MistralRsEngine(Engine):
    """A Chat and Completion engine; mistral.rs batches concurrent requests itself."""

    model_type = ModelType.Chat
    also_serves = frozenset({ModelType.Completion})
    requires_model = True
    accepted_flags = frozenset({"extra_engine_args", "model_config"})
    #: What `chat_request_kwargs` passes on to mistral.rs; anything else a request asks for
    #: (logprobs, seed, structured output, tools, ...) is refused by the frontend.
    features = frozenset(
        {
            Feature.TEMPERATURE,
            Feature.TOP_P,
            Feature.TOP_K,
            Feature.MIN_P,
            Feature.PRESENCE_PENALTY,
            Feature.FREQUENCY_PENALTY,
            Feature.REPETITION_PENALTY,
            Feature.STOP,
            Feature.IGNORE_EOS,
        }
    )

    #: Tokens a completion generates per call to mistral.rs, between checks for cancellation.
    completion_slice_tokens = SLICE_TOKENS

    def __init__(self, runner: Any, model_name: str, max_seqs: int):
        self._runner = runner
        self._model = model_name
        self._context_length: int | None = runner.max_sequence_length()
        # mistral.rs's streaming iterator blocks: one thread per concurrent request.
        self._executor = ThreadPoolExecutor(max_workers=max_seqs, thread_name_prefix="mistralrs")
        # Held from a chat request's send until its first chunk (its prefill) is done, and for
        # each call of a completion (see `_completion`). `Runner.send_*` borrows the Rust runner
        # mutably, so two threads sending at once fail with "Already borrowed"; and mistral.rs
        # 0.9's CPU GGUF path fails on two prompts of one length prefilled in one batch ("input
        # tensor is not contiguous" in the lm_head; still so in 0.9.5, the README has how it was
        # checked). Decoding is still batched.
        self._prefill_lock = threading.Lock()

    @classmethod
    async def start(cls, config: EngineConfig) -> Self:
        import mistralrs

        kwargs = runner_kwargs(config)
        target = which(config)
        log.info("loading %s with mistral.rs", config.model_path)
        try:
            runner = await asyncio.to_thread(mistralrs.Runner, which=target, **kwargs)
        except (ValueError, RuntimeError, OSError) as e:
            raise EngineError(f"mistral.rs could not load {config.model_path}: {e}") from None
        return cls(runner, config.model_name, kwargs["max_seqs"])

    def generate(self, request: dict[str, Any], context: Context) -> AsyncIterator[dict[str, Any]]:
        target = self._chat if "messages" in request else self._completion

        def produce(push: Any, abort: threading.Event) -> None:
            target(request, context, abort, push)

        return stream_from_thread(self._executor, produce, "mistral.rs")

    def _chat(
        self, body: dict[str, Any], context: Context, abort: threading.Event, push: Any
    ) -> None:
        import mistralrs

        messages = [
            {"role": m["role"], "content": m.get("content") or ""} for m in body["messages"]
        ]
        request = mistralrs.ChatCompletionRequest(
            messages=messages, stream=True, **chat_request_kwargs(body, self._model)
        )
        with self._prefill_lock:
            if abort.is_set() or context.is_stopped():
                return  # cancelled while waiting for another request's prefill
            stream = iter(self._runner.send_chat_completion_request(request))
            first = next(stream, None)
        chunks = stream if first is None else itertools.chain((first,), stream)
        builder = ResponseBuilder("chat", context.id(), self._model)
        for chunk in chunks:
            if abort.is_set() or context.is_stopped():
                break  # dropping the stream drops the sequence in mistral.rs
            choice = chunk.choices[0]
            out = builder.chunk(StreamDelta(choice.delta.content or "", choice.finish_reason))
            out["created"] = chunk.created
            out["usage"] = _usage(chunk.usage)
            push(out)

    def _completion(
        self, body: dict[str, Any], context: Context, abort: threading.Event, push: Any
    ) -> None:
        import mistralrs

        prompt = body.get("prompt")
        if isinstance(prompt, list):
            prompt = prompt[0] if prompt and isinstance(prompt[0], str) else None
        if not isinstance(prompt, str):
            raise ValueError("out=mistralrs takes text prompts, not token ids")
        kwargs = chat_request_kwargs(body, self._model)
        max_tokens = kwargs.pop("max_tokens", None)

        def stopped() -> bool:
            return abort.is_set() or context.is_stopped()

        def send(text: str, tokens: int) -> Any:
            request = mistralrs.CompletionRequest(prompt=text, max_tokens=tokens, **kwargs)
            # Not streamed by its API: the call holds the runner until the slice is generated.
            with self._prefill_lock:
                if stopped():
                    return None  # cancelled while waiting for another request's turn
                return self._runner.send_completion_request(request)

        def count(text: str) -> int:
            with self._prefill_lock:  # `tokenize_text` borrows the runner too
                return len(self._runner.tokenize_text(text, False, None))

        # In slices (see `_completion`): its API cannot stop a completion once sent.
        builder = ResponseBuilder("completion", context.id(), self._model)
        pieces = sliced_completion(
            send,
            count,
            prompt,
            max_tokens,
            kwargs.get("stop_seqs"),
            stopped,
            self._context_length,
            self.completion_slice_tokens,
        )
        for piece in pieces:
            out = builder.chunk(StreamDelta(piece.text, piece.finish_reason))
            out["usage"] = {
                "prompt_tokens": piece.prompt_tokens,
                "completion_tokens": piece.completion_tokens,
                "total_tokens": piece.prompt_tokens + piece.completion_tokens,
            }
            push(out)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
