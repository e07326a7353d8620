"""`LlamaCppEngine`: a Backend engine that decodes many requests at once with llama.cpp.

The async side validates each request, hands it to the decode loop (`_batch.BatchLoop`, one
thread) and yields the deltas the loop delivers. See the package README for the options.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

from dynamo.engines.llamacpp._batch import BatchLoop
from dynamo.engines.llamacpp._native import NativeModel
from dynamo.engines.llamacpp._options import EngineSettings
from dynamo.engines.llamacpp._sampling import SUPPORTED_FIELDS, SamplingParams
from dynamo.engines.llamacpp._sequence import Sequence
from dynamo.llm import Context, Engine, EngineConfig, ModelType
from dynamo.llm.engine import EngineRuntime
from dynamo.llm.errors import (
    ContextLengthExceededError,
    EngineError,
    InvalidRequestError,
    RequestError,
)
from dynamo.llm.features import MAX_TOP_LOGPROBS, SAMPLING_KNOBS, Feature
from dynamo.llm.generation_options import GenerationOptions

log = logging.getLogger(__name__)


def _gguf_path(config: EngineConfig) -> Path:
    path = Path(config.model_path or "")
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not ggufs:
            raise EngineError(f"out=llamacpp needs a GGUF file; {path} has none")
        path = ggufs[0]
    if path.suffix != ".gguf" or not path.is_file():
        raise EngineError(f"out=llamacpp needs a GGUF file, got '{config.model_path}'")
    return path


class LlamaCppEngine(Engine):
    """Token ids in, token ids out; up to `max_num_seqs` requests decoded together."""

    model_type = ModelType.Backend
    requires_model = True
    accepted_flags = frozenset({"context_length", "extra_engine_args", "model_config"})
    #: Every sampling knob (including logit_bias), log probabilities and structured output.
    features = SAMPLING_KNOBS | {
        Feature.LOGPROBS,
        Feature.GUIDED_JSON,
        Feature.GUIDED_REGEX,
        Feature.GUIDED_CHOICE,
        Feature.GUIDED_GRAMMAR,
    }

    def __init__(self, native: NativeModel, settings: EngineSettings):
        self._native = native
        self._loop = BatchLoop(native, prefix_cache=settings.prefix_cache)
        #: Each request's context (prompt plus output), in tokens: the model card's context length.
        self.context_length = native.n_ctx
        #: Requests decoded at once; more wait in arrival order. For admission control.
        self.max_num_seqs = native.n_parallel
        #: Most tokens decoded in one step.
        self.max_num_batched_tokens = native.n_batch
        self._loop.start()

    @classmethod
    async def start(cls, config: EngineConfig) -> Self:
        path = _gguf_path(config)
        card = config.card
        settings = EngineSettings.from_config(config, card.context_length if card else None)
        native = await asyncio.to_thread(NativeModel.load, path, settings)
        log.info(
            "loaded %s with llama.cpp: %d slots x %d tokens of context",
            path.name,
            native.n_parallel,
            native.n_ctx,
        )
        return cls(native, settings)

    def runtime(self) -> EngineRuntime:
        """What the frontend checks prompts against is what this engine can hold (each slot's
        context), and admission control admits no more than its slots at once."""
        return EngineRuntime(
            context_length=self.context_length,
            runtime_config={
                "max_num_seqs": self.max_num_seqs,
                "max_num_batched_tokens": self.max_num_batched_tokens,
            },
        )

    @property
    def free_slots(self) -> int:
        """Slots no request holds now."""
        return self._loop.slots.free

    @property
    def in_flight(self) -> int:
        """Requests running or waiting for a slot."""
        return self._loop.in_flight

    async def kv_tokens_in_use(self) -> int:
        """KV cells held by all slots together (read on the decode thread, between steps)."""
        native = self._native

        def count() -> int:
            return sum(native.seq_length(slot) for slot in range(native.n_parallel))

        return await asyncio.wrap_future(self._loop.call(count))

    def _sequence(self, request: dict[str, Any], context: Context) -> Sequence:
        prompt = request.get("token_ids")
        n_vocab = self._native.n_vocab
        if not isinstance(prompt, list) or not prompt:
            raise InvalidRequestError("the prompt has no tokens", param="prompt")
        if not all(type(t) is int and 0 <= t < n_vocab for t in prompt):
            raise InvalidRequestError(f"prompt token ids must be in [0, {n_vocab})", param="prompt")
        room = self.context_length - len(prompt)
        if room <= 0:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {self.context_length} tokens, but the "
                f"prompt has {len(prompt)} tokens. Shorten the prompt."
            )
        opts = GenerationOptions.from_request(request, SUPPORTED_FIELDS)
        if opts.max_tokens is not None and opts.max_tokens < 1:
            raise InvalidRequestError("max_tokens must be at least 1", param="max_tokens")
        if opts.logprobs is not None and not 0 <= opts.logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidRequestError(
                f"logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}]", param="logprobs"
            )
        eos = frozenset() if opts.ignore_eos else frozenset(opts.eos_token_ids)
        if eos and opts.guided_decoding:
            # A completed grammar lets only end-of-generation tokens through, whichever the
            # model's vocabulary has; the card's EOS list may name just the end of turn.
            eos |= self._native.eog_tokens
        return Sequence(
            prompt,
            SamplingParams.from_options(opts, n_vocab),
            max_tokens=min(opts.max_tokens or room, room),
            min_tokens=opts.min_tokens,
            eos=eos,
            context=context,
            loop=asyncio.get_running_loop(),
            logprobs=opts.logprobs,
        )

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        seq = self._sequence(request, context)
        self._loop.submit(seq)
        try:
            while True:
                item = await seq.queue.get()
                if isinstance(item, RequestError):
                    raise item
                yield item
                if item.get("finish_reason"):
                    return
        finally:
            # Nobody reads on: the decode thread frees the slot at its next step.
            seq.abandoned = True
            self._loop.wake()

    async def close(self) -> None:
        """Stop decoding after the step in progress (requests in flight end with an error) and
        free the model, without blocking the event loop."""
        self._loop.stop()
        await asyncio.to_thread(self._loop.join)
