"""One request inside the decode loop: its prompt, limits, sampler, place in the KV cache and the
queue its deltas go to."""

from __future__ import annotations

import asyncio
from typing import Any

from dynamo.engines.llamacpp._sampling import Sampler, SamplingParams
from dynamo.runtime import Context


class Sequence:
    """Created on the event loop by `generate`; from then on only the decode thread changes it,
    except `abandoned`, which the request's task sets when its consumer goes away."""

    def __init__(
        self,
        prompt: list[int],
        params: SamplingParams,
        *,
        max_tokens: int,
        min_tokens: int,
        eos: frozenset[int],
        context: Context,
        loop: asyncio.AbstractEventLoop,
        logprobs: int | None = None,
    ):
        self.prompt = prompt
        self.params = params
        self.max_tokens = max_tokens
        self.min_tokens = min_tokens
        self.eos = eos
        self.context = context
        #: Top alternatives to report per token (0: the sampled token's only; None: none).
        self.logprobs = logprobs
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        #: Set by the request's task when nobody reads the stream any more.
        self.abandoned = False
        self.slot = -1
        #: Positions of this sequence in its KV stream.
        self.n_past = 0
        #: Tokens to decode next: the rest of the prompt, then the last sampled token.
        self.pending: list[int] = []
        self.output: list[int] = []
        self.sampler: Sampler | None = None
        #: Batch row whose logits this sequence samples from after the current step (-1: none).
        self.row = -1

    def cancelled(self) -> bool:
        return self.abandoned or self.context.is_stopped()

    @property
    def prefilling(self) -> bool:
        return not self.output

    def in_kv(self) -> list[int]:
        """The tokens whose KV cells this sequence holds, in position order."""
        return (self.prompt + self.output)[: self.n_past]

    def accept(self, token: int) -> str | None:
        """Take a sampled token; the finish reason when the sequence ends with it."""
        if token in self.eos and len(self.output) >= self.min_tokens:
            return "eos"
        self.output.append(token)
        self.pending = [token]
        return "length" if len(self.output) >= self.max_tokens else None
