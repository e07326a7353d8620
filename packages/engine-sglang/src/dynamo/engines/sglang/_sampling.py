"""A `PreprocessedRequest` as SGLang's `sampling_params` dict and `async_generate` arguments.

One to one, as upstream Dynamo's SGLang handler maps them (SGLang's names on the right):

- temperature (0: greedy), top_p, top_k (unset: all, SGLang's -1), min_p, the three penalties;
- `max_tokens` -> `max_new_tokens`, passed even when unset (None: until EOS or the context is
  full; SGLang's own default when the key is missing is 128), `min_tokens` -> `min_new_tokens`,
  `ignore_eos`;
- stop token ids: the visible ones, the hidden ones and the model's EOS ids (only the visible with
  `ignore_eos`), so SGLang stops where our decoder does; stop *strings* are matched by our
  decoder, which then stops the request (an abort in SGLang);
- `seed` -> `sampling_seed`, which SGLang honours only with deterministic inference on
  (`enable_deterministic_inference`); without it a seeded request is refused, not run unseeded;
- guided decoding: `json` -> `json_schema` (a JSON string), `regex`, `choice` -> a regex of the
  escaped alternatives, `grammar` -> `ebnf`, `structural_tag`; SGLang picks its grammar backend
  per server (`grammar_backend`), so a request's `backend` is refused;
- `logit_bias` (token ids as strings, SGLang's form); `output_options.logprobs: k` ->
  `return_logprob` with `top_logprobs_num=k`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.features import SAMPLING_KNOBS, Feature, guided_feature
from dynamo.llm.generation_options import GenerationOptions, guided_constraint

#: The optional request fields this engine honours (`GenerationOptions.from_request`).
SUPPORTED_FIELDS = frozenset({"guided_decoding", "logit_bias", "logprobs"})
#: What the frontend may send this engine (`dynamo.llm.features`); `seed` only when SGLang runs
#: deterministically (`features_for`).
FEATURES = (
    (SAMPLING_KNOBS - {Feature.SEED})
    | {Feature.LOGPROBS}
    | {guided_feature(kind) for kind in ("json", "regex", "choice", "grammar")}
)
SEED_HINT = (
    "'seed' needs SGLang's deterministic inference: start the worker with "
    "--extra-engine-args '{\"enable_deterministic_inference\": true}'"
)


def features_for(deterministic: bool) -> frozenset[Feature]:
    return FEATURES | {Feature.SEED} if deterministic else FEATURES


def guided_params(guided: Mapping[str, Any]) -> dict[str, Any]:
    """SGLang's grammar field for our `guided_decoding` (exactly one constraint)."""
    for key in ("backend", "whitespace_pattern"):
        if guided.get(key) is not None:
            raise InvalidRequestError(
                f"guided_decoding.{key} is not supported by out=sglang (SGLang sets its grammar "
                "backend per server: --extra-engine-args grammar_backend)",
                param="guided_decoding",
            )
    kind, value = guided_constraint(guided)
    if kind == "json":
        return {"json_schema": value if isinstance(value, str) else json.dumps(value)}
    if kind == "regex":
        return {"regex": value}
    if kind == "choice":
        return {"regex": "(" + "|".join(re.escape(str(c)) for c in value) + ")"}
    if kind == "grammar":
        return {"ebnf": value}
    return {"structural_tag": value if isinstance(value, str) else json.dumps(value)}


def sampling_params(opts: GenerationOptions, *, deterministic: bool) -> dict[str, Any]:
    """The `sampling_params` dict for `Engine.async_generate`."""
    params: dict[str, Any] = {
        "max_new_tokens": opts.max_tokens,
        "min_new_tokens": opts.min_tokens,
        "temperature": opts.temperature,
        "top_p": opts.top_p,
        "top_k": -1 if opts.top_k is None else opts.top_k,
        "min_p": opts.min_p,
        "repetition_penalty": opts.repetition_penalty,
        "presence_penalty": opts.presence_penalty,
        "frequency_penalty": opts.frequency_penalty,
        "ignore_eos": opts.ignore_eos,
        "stop_token_ids": list(opts.stop_token_ids) or None,
    }
    if opts.seed is not None:
        if not deterministic:
            raise InvalidRequestError(SEED_HINT, param="seed")
        params["sampling_seed"] = opts.seed
    if opts.logit_bias:
        params["logit_bias"] = {str(k): v for k, v in opts.logit_bias.items()}
    if opts.guided_decoding:
        params.update(guided_params(opts.guided_decoding))
    return params


def generate_kwargs(opts: GenerationOptions) -> dict[str, Any]:
    """`async_generate` keyword arguments besides the prompt, sampling params and rid."""
    if opts.logprobs is None:
        return {}
    return {"return_logprob": True, "top_logprobs_num": opts.logprobs, "logprob_start_len": -1}


__all__ = [
    "FEATURES",
    "SEED_HINT",
    "SUPPORTED_FIELDS",
    "features_for",
    "generate_kwargs",
    "guided_params",
    "sampling_params",
]
