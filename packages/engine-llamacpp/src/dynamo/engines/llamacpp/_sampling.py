"""Per-sequence sampling: a request's sampling options (read once, by
`dynamo.llm.generation_options`) as a llama.cpp sampler chain of its own.

Each running sequence has its own chain, seeded with its own seed (or a random one), so one
request's parameters and seed never reach another. Unset options take OpenAI's defaults
(temperature 1, top_p 1, no top_k, no min_p), not llama-cpp-python's (0.8, 0.95, 40, 0.05), so
that a request means the same on every engine. The chain's order is llama-cpp-python's:
logit bias, penalties, grammar, then greedy, or top_k, top_p, min_p, temperature and a draw.
A grammar (structured output, `_guided`) only lets through tokens that keep the text matching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import llama_cpp

from dynamo.engines.llamacpp._guided import grammar_for
from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.generation_options import GenerationOptions

#: The optional request fields llama.cpp honours (`GenerationOptions.from_request`); the others
#: (prompt log probabilities, allowed or banned token lists, beam search, ...) are refused.
SUPPORTED_FIELDS = frozenset({"logit_bias", "guided_decoding", "logprobs"})

#: llama.cpp reads this seed as "pick a random one".
_RANDOM_SEED = llama_cpp.LLAMA_DEFAULT_SEED


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """A request's sampling options (`GenerationOptions`, which owns their reading and defaults),
    checked for what llama.cpp's samplers take, and its grammar."""

    options: GenerationOptions
    #: A GBNF grammar the output must match (structured output; root rule `root`).
    grammar: str | None = None

    @property
    def penalised(self) -> bool:
        o = self.options
        return (
            o.repetition_penalty != 1.0 or o.presence_penalty != 0.0 or o.frequency_penalty != 0.0
        )

    @classmethod
    def from_options(cls, opts: GenerationOptions, n_vocab: int) -> SamplingParams:
        """Refuse (a 400 naming the field) what llama.cpp cannot take: a range its samplers do
        not, a token outside the vocabulary, a grammar it cannot build. `GenerationOptions`
        already refused values of the wrong type."""

        def in_range(name: str, value: float, low: float, high: float = math.inf) -> None:
            if not (low <= value <= high):
                raise InvalidRequestError(f"{name} must be in [{low}, {high}]", param=name)

        in_range("temperature", opts.temperature, 0.0)
        in_range("top_p", opts.top_p, 0.0, 1.0)
        if opts.top_p == 0.0:
            raise InvalidRequestError("top_p must be above 0", param="top_p")
        in_range("min_p", opts.min_p, 0.0, 1.0)
        in_range("repetition_penalty", opts.repetition_penalty, 0.0)
        if opts.repetition_penalty == 0.0:
            raise InvalidRequestError(
                "repetition_penalty must be above 0", param="repetition_penalty"
            )
        for token in opts.logit_bias or ():
            if not 0 <= token < n_vocab:
                raise InvalidRequestError(
                    f"logit_bias token id {token} is outside the vocabulary [0, {n_vocab})",
                    param="logit_bias",
                )
        guided = opts.guided_decoding
        return cls(opts, grammar_for(dict(guided)) if guided else None)


def chain_seed(seed: int | None) -> int:
    """The 32-bit seed llama.cpp's draw takes: a request's seed folded into 32 bits (never the
    value that means "random"), or the random marker when the request has none."""
    if seed is None:
        return _RANDOM_SEED
    folded = seed & 0xFFFFFFFF
    return folded if folded != _RANDOM_SEED else _RANDOM_SEED - 1


class Sampler:
    """A llama.cpp sampler chain for one sequence; `sample` picks and accepts a token."""

    def __init__(self, params: SamplingParams, vocab: Any, n_vocab: int, n_ctx: int):
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self._chain: Any = chain

        def add(sampler: Any) -> None:
            llama_cpp.llama_sampler_chain_add(chain, sampler)

        opts = params.options
        try:
            if opts.logit_bias:
                array = (llama_cpp.llama_logit_bias * len(opts.logit_bias))()
                for i, (token, amount) in enumerate(opts.logit_bias.items()):
                    array[i].token, array[i].bias = token, amount
                add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(array), array))
            if params.penalised:
                # Over the whole output so far (OpenAI's penalties count every generated token).
                add(
                    llama_cpp.llama_sampler_init_penalties(
                        n_vocab,
                        n_ctx,
                        opts.repetition_penalty,
                        opts.frequency_penalty,
                        opts.presence_penalty,
                    )
                )
            if params.grammar is not None:
                grammar = llama_cpp.llama_sampler_init_grammar(
                    vocab, params.grammar.encode(), b"root"
                )
                if not grammar:
                    raise InvalidRequestError(
                        "llama.cpp could not parse the grammar", param="guided_decoding"
                    )
                add(grammar)
            if opts.greedy:
                add(llama_cpp.llama_sampler_init_greedy())
                return
            if opts.top_k is not None:
                add(llama_cpp.llama_sampler_init_top_k(opts.top_k))
            if opts.top_p < 1.0:
                add(llama_cpp.llama_sampler_init_top_p(opts.top_p, 1))
            if opts.min_p > 0.0:
                add(llama_cpp.llama_sampler_init_min_p(opts.min_p, 1))
            add(llama_cpp.llama_sampler_init_temp(opts.temperature))
            add(llama_cpp.llama_sampler_init_dist(chain_seed(opts.seed)))
        except BaseException:
            self.close()
            raise

    def sample(self, ctx: Any, index: int) -> int:
        """Sample from the logits of batch row `index`, and feed the token back to the chain
        (penalties and grammar follow the output)."""
        return llama_cpp.llama_sampler_sample(self._chain, ctx, index)

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
