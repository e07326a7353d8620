"""Per-sequence sampling: a request's `sampling_options` as a llama.cpp sampler chain of its own.

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

#: llama.cpp reads this seed as "pick a random one".
_RANDOM_SEED = llama_cpp.LLAMA_DEFAULT_SEED


@dataclass(frozen=True, slots=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()
    #: A GBNF grammar the output must match (structured output; root rule `root`).
    grammar: str | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def penalised(self) -> bool:
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )

    @classmethod
    def from_options(cls, sampling: dict[str, Any], n_vocab: int) -> SamplingParams:
        """Validate a PreprocessedRequest's `sampling_options`; a 400 names the bad field."""

        def number(name: str, default: float, low: float, high: float = math.inf) -> float:
            value = sampling.get(name)
            if value is None:
                return default
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidRequestError(f"{name} must be a number", param=name)
            if not (low <= value <= high):
                raise InvalidRequestError(f"{name} must be in [{low}, {high}]", param=name)
            return float(value)

        top_k = sampling.get("top_k")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
            raise InvalidRequestError("top_k must be an integer", param="top_k")
        seed = sampling.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidRequestError("seed must be an integer", param="seed")
        guided = sampling.get("guided_decoding")
        if guided is not None and not isinstance(guided, dict):
            raise InvalidRequestError("guided_decoding must be an object", param="guided_decoding")
        top_p = number("top_p", 1.0, 0.0, 1.0)
        if top_p == 0.0:
            raise InvalidRequestError("top_p must be above 0", param="top_p")
        repetition = number("repetition_penalty", 1.0, 0.0)
        if repetition == 0.0:
            raise InvalidRequestError(
                "repetition_penalty must be above 0", param="repetition_penalty"
            )
        return cls(
            temperature=number("temperature", 1.0, 0.0),
            top_p=top_p,
            top_k=0 if top_k is None or top_k < 0 else top_k,
            min_p=number("min_p", 0.0, 0.0, 1.0),
            repetition_penalty=repetition,
            presence_penalty=number("presence_penalty", 0.0, -math.inf),
            frequency_penalty=number("frequency_penalty", 0.0, -math.inf),
            seed=seed,
            logit_bias=_logit_bias(sampling.get("logit_bias"), n_vocab),
            grammar=grammar_for(guided) if guided else None,
        )


def _logit_bias(value: Any, n_vocab: int) -> tuple[tuple[int, float], ...]:
    if not value:
        return ()
    if not isinstance(value, dict):
        raise InvalidRequestError("logit_bias must map token ids to biases", param="logit_bias")
    bias = []
    for key, amount in value.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise InvalidRequestError(
                f"logit_bias key {key!r} is not a token id", param="logit_bias"
            ) from None
        if not 0 <= token < n_vocab:
            raise InvalidRequestError(
                f"logit_bias token id {token} is outside the vocabulary [0, {n_vocab})",
                param="logit_bias",
            )
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            raise InvalidRequestError("logit_bias values must be numbers", param="logit_bias")
        bias.append((token, float(amount)))
    return tuple(bias)


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

        try:
            if params.logit_bias:
                array = (llama_cpp.llama_logit_bias * len(params.logit_bias))()
                for i, (token, amount) in enumerate(params.logit_bias):
                    array[i].token, array[i].bias = token, amount
                add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(array), array))
            if params.penalised:
                # Over the whole output so far (OpenAI's penalties count every generated token).
                add(
                    llama_cpp.llama_sampler_init_penalties(
                        n_vocab,
                        n_ctx,
                        params.repetition_penalty,
                        params.frequency_penalty,
                        params.presence_penalty,
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
            if params.greedy:
                add(llama_cpp.llama_sampler_init_greedy())
                return
            if params.top_k > 0:
                add(llama_cpp.llama_sampler_init_top_k(params.top_k))
            if params.top_p < 1.0:
                add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            if params.min_p > 0.0:
                add(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
            add(llama_cpp.llama_sampler_init_temp(params.temperature))
            add(llama_cpp.llama_sampler_init_dist(chain_seed(params.seed)))
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
