"""A `PreprocessedRequest` as TensorRT-LLM `SamplingParams` keyword arguments.

TensorRT-LLM's own conventions, read from its `sampling_params.py`, shape the mapping:

- An unset `temperature`, `top_p` and `top_k` together mean *greedy* there, not OpenAI's
  "sample at temperature 1"; so sampling always sets `top_k` (0: all tokens) and `top_p`, and
  greedy (temperature 0) is `top_k=1` with the rest unset (its temperature must be > 0).
- `max_tokens` defaults to 32 there; a request without one gets the room left in the context.
- Stop token ids: the hidden ones and the model's EOS ids (none with `ignore_eos`) go to
  TensorRT-LLM. The *visible* stop ids do not: TensorRT-LLM does not return a token it stopped
  on, and our decoder must emit a visible stop token's text, so it matches those itself and stops
  the request. The end-of-sequence id comes from the model's tokenizer (kept loaded).
- seed, min_p, the three penalties, min_tokens and ignore_eos map one to one.
- Guided decoding becomes `GuidedDecodingParams` (json, regex, grammar, structural_tag; a choice
  is a regex of the escaped alternatives) and needs an LLM started with
  `guided_decoding_backend` (xgrammar or llguidance); without one it is refused.
- Detokenizing is off (`detokenize=False`): our frontend detokenizes.
- Not supported, refused by name: logit_bias, logprobs, prompt_logprobs, allowed_token_ids, bad
  words, beam search.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from dynamo.llm.errors import ContextLengthExceededError, InvalidRequestError
from dynamo.llm.features import SAMPLING_KNOBS, Feature, guided_feature
from dynamo.llm.generation_options import GenerationOptions, guided_constraint

#: The optional request fields this engine honours (`GenerationOptions.from_request`).
SUPPORTED_FIELDS = frozenset({"guided_decoding"})
#: Always honoured; the guided-decoding features only with a grammar backend (`features_for`).
FEATURES = SAMPLING_KNOBS - {Feature.LOGIT_BIAS}
GUIDED_FEATURES = frozenset(guided_feature(k) for k in ("json", "regex", "choice", "grammar"))
GUIDED_HINT = (
    "guided decoding needs TensorRT-LLM's grammar backend: start the worker with "
    '--extra-engine-args \'{"guided_decoding_backend": "xgrammar"}\''
)


def features_for(guided_decoding: bool) -> frozenset[Feature]:
    return FEATURES | GUIDED_FEATURES if guided_decoding else FEATURES


def guided_kwargs(guided: Mapping[str, Any]) -> dict[str, Any]:
    """`GuidedDecodingParams(**kwargs)` for our `guided_decoding` (exactly one constraint)."""
    for key in ("backend", "whitespace_pattern"):
        if guided.get(key) is not None:
            raise InvalidRequestError(
                f"guided_decoding.{key} is not supported by out=trtllm (the grammar backend is "
                "chosen per server: guided_decoding_backend)",
                param="guided_decoding",
            )
    kind, value = guided_constraint(guided)
    if kind == "json":
        return {"json": value}
    if kind == "choice":
        return {"regex": "(" + "|".join(re.escape(str(c)) for c in value) + ")"}
    if kind == "structural_tag":
        return {"structural_tag": value if isinstance(value, str) else json.dumps(value)}
    return {kind: value}  # regex, grammar


def hidden_stop_ids(opts: GenerationOptions, visible: Iterable[int]) -> list[int]:
    """The stop ids TensorRT-LLM should stop on: all but the visible ones."""
    shown = set(visible)
    return [t for t in opts.stop_token_ids if t not in shown]


def sampling_kwargs(
    opts: GenerationOptions,
    visible_stop_ids: Iterable[int],
    *,
    max_seq_len: int | None,
    guided_decoding: bool,
) -> dict[str, Any]:
    """`SamplingParams(**kwargs)` for one request; `guided_decoding` stays a plain dict under
    that key (the engine wraps it in `GuidedDecodingParams`)."""
    max_tokens = opts.max_tokens
    if max_seq_len is not None:
        room = max_seq_len - len(opts.prompt)
        if room <= 0:
            raise ContextLengthExceededError(
                f"The prompt has {len(opts.prompt)} tokens; this model's maximum context length "
                f"is {max_seq_len} tokens"
            )
        max_tokens = room if max_tokens is None else min(max_tokens, room)
    if max_tokens is None:
        raise InvalidRequestError("out=trtllm needs max_tokens (the model's context is unknown)")
    kwargs: dict[str, Any] = {
        "n": 1,
        "max_tokens": max_tokens,
        "min_tokens": min(opts.min_tokens, max_tokens) or None,
        "ignore_eos": opts.ignore_eos,
        "stop_token_ids": hidden_stop_ids(opts, visible_stop_ids) or None,
        "seed": opts.seed,
        "min_p": opts.min_p or None,
        "repetition_penalty": opts.repetition_penalty,
        "presence_penalty": opts.presence_penalty,
        "frequency_penalty": opts.frequency_penalty,
        "detokenize": False,
    }
    if opts.greedy:
        kwargs |= {"top_k": 1, "top_p": None, "temperature": None}
    else:
        kwargs |= {"top_k": opts.top_k or 0, "top_p": opts.top_p, "temperature": opts.temperature}
    if opts.guided_decoding:
        if not guided_decoding:
            raise InvalidRequestError(GUIDED_HINT, param="guided_decoding")
        kwargs["guided_decoding"] = guided_kwargs(opts.guided_decoding)
    return kwargs


__all__ = [
    "FEATURES",
    "GUIDED_FEATURES",
    "GUIDED_HINT",
    "SUPPORTED_FIELDS",
    "features_for",
    "guided_kwargs",
    "hidden_stop_ids",
    "sampling_kwargs",
]
