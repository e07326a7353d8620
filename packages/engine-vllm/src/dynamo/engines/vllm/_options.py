"""A `PreprocessedRequest` as vLLM `SamplingParams` keyword arguments, and vLLM's outputs as our
`LLMEngineOutput` deltas.

Plain values in and out (vLLM's `Logprob` is read by attribute), so every mapping is unit-tested
without vLLM. One to one, as upstream Dynamo's vLLM handler maps them:

- temperature (0: greedy), top_p, top_k (unset: all tokens, vLLM's 0), min_p, seed, the three
  penalties, max_tokens, min_tokens, ignore_eos, logit_bias, allowed_token_ids;
- stop token ids: the visible ones, the hidden ones and the model's EOS ids (none of the hidden
  with `ignore_eos`), so vLLM stops where our decoder does;
- stop *strings* are not passed: vLLM runs without a detokenizer (`detokenize=False`), our decoder
  matches them and stops the request, which aborts it in vLLM;
- guided decoding: `structured_outputs` (vLLM's `StructuredOutputsParams` fields);
- output_options.logprobs / prompt_logprobs: vLLM's `logprobs` / `prompt_logprobs`.

vLLM's `max_tokens` default is 16; a request without one gets the room left in the context.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dynamo.llm.errors import ContextLengthExceededError, InvalidRequestError
from dynamo.llm.features import SAMPLING_KNOBS, Feature
from dynamo.llm.generation_options import GenerationOptions

#: The optional request fields this engine honours (`GenerationOptions.from_request`).
SUPPORTED_FIELDS = frozenset(
    {"guided_decoding", "logit_bias", "allowed_token_ids", "logprobs", "prompt_logprobs"}
)
#: What the frontend may send this engine (`dynamo.llm.features`).
FEATURES = SAMPLING_KNOBS | frozenset(
    {
        Feature.LOGPROBS,
        Feature.PROMPT_LOGPROBS,
        Feature.GUIDED_JSON,
        Feature.GUIDED_REGEX,
        Feature.GUIDED_CHOICE,
        Feature.GUIDED_GRAMMAR,
    }
)
#: vLLM's finish reasons as ours; `stop` is decided by `finish_reason` below.
_FINISH = {"length": "length", "abort": "cancelled", "error": "error", "repetition": "stop"}


def sampling_kwargs(request: Mapping[str, Any], max_model_len: int) -> dict[str, Any]:
    """`SamplingParams(**kwargs)` for one request (less `output_kind`, which needs vLLM)."""
    opts = GenerationOptions.from_request(request, SUPPORTED_FIELDS)
    room = max_model_len - len(opts.prompt)
    if room <= 0:
        raise ContextLengthExceededError(
            f"The prompt has {len(opts.prompt)} tokens; this model's maximum context length is "
            f"{max_model_len} tokens"
        )
    max_tokens = room if opts.max_tokens is None else min(opts.max_tokens, room)
    kwargs: dict[str, Any] = {
        "n": 1,
        "temperature": opts.temperature,
        "top_p": opts.top_p,
        "top_k": opts.top_k or 0,
        "min_p": opts.min_p,
        "seed": opts.seed,
        "repetition_penalty": opts.repetition_penalty,
        "presence_penalty": opts.presence_penalty,
        "frequency_penalty": opts.frequency_penalty,
        "max_tokens": max_tokens,
        "min_tokens": min(opts.min_tokens, max_tokens),
        "ignore_eos": opts.ignore_eos,
        "stop_token_ids": list(opts.stop_token_ids),
        "detokenize": False,
        "skip_special_tokens": False,
    }
    if opts.logit_bias:
        kwargs["logit_bias"] = dict(opts.logit_bias)
    if opts.allowed_token_ids:
        kwargs["allowed_token_ids"] = list(opts.allowed_token_ids)
    if opts.logprobs is not None:
        kwargs["logprobs"] = opts.logprobs
    if opts.prompt_logprobs is not None:
        kwargs["prompt_logprobs"] = opts.prompt_logprobs
    guided = opts.guided_kind()
    if guided is not None:
        kwargs["structured_outputs"] = structured_outputs_kwargs(opts.guided_decoding or {})
    return kwargs


def structured_outputs_kwargs(guided: Mapping[str, Any]) -> dict[str, Any]:
    """`StructuredOutputsParams(**kwargs)` for our `guided_decoding` (one constraint)."""
    out: dict[str, Any] = {}
    for key in ("json", "regex", "choice", "grammar"):
        value = guided.get(key)
        if value is not None and value != []:
            out[key] = value
    if guided.get("structural_tag") is not None:
        raise InvalidRequestError(
            "guided_decoding.structural_tag is not supported by out=vllm", param="guided_decoding"
        )
    if guided.get("whitespace_pattern") is not None:
        out["whitespace_pattern"] = guided["whitespace_pattern"]
    return out


def finish_reason(
    reason: str | None, stop_reason: int | str | None, visible_stop_ids: Iterable[int]
) -> str | None:
    """Our finish reason for vLLM's: `stop` on a visible stop token id, `eos` on EOS or a hidden
    stop id (vLLM reports those as `stop` too), `cancelled` for `abort`."""
    if reason is None:
        return None
    if reason == "stop":
        visible = stop_reason is not None and (
            isinstance(stop_reason, str) or stop_reason in set(visible_stop_ids)
        )
        return "stop" if visible else "eos"
    return _FINISH.get(reason, "error")


def top_logprobs(position: Mapping[int, Any], top: int) -> list[dict[str, Any]]:
    """One position's best `top` alternatives (vLLM ranks from 1), best first."""
    ranked = sorted(
        (lp.rank, token_id, lp.logprob)
        for token_id, lp in position.items()
        if lp.rank is not None and lp.rank <= top
    )
    return [{"rank": r, "token_id": t, "logprob": lp} for r, t, lp in ranked]


def logprob_fields(
    token_ids: Sequence[int], logprobs: Sequence[Mapping[int, Any]] | None, top: int
) -> dict[str, Any]:
    """`log_probs` and `top_logprobs` for a delta's tokens from vLLM's per-token dicts."""
    if logprobs is None:
        return {}
    if len(logprobs) != len(token_ids):
        raise ValueError(f"vLLM sent {len(logprobs)} logprob entries for {len(token_ids)} tokens")
    return {
        "log_probs": [pos[t].logprob for t, pos in zip(token_ids, logprobs, strict=True)],
        "top_logprobs": [top_logprobs(pos, top) for pos in logprobs],
    }


def prompt_logprob_field(prompt_logprobs: Sequence[Mapping[int, Any] | None]) -> list[Any]:
    """Our `prompt_logprobs`: per prompt token (None for the first) every entry vLLM sent (the
    prompt token's own and the top alternatives), best first."""
    return [
        None if pos is None else top_logprobs(pos, max(lp.rank or 0 for lp in pos.values()))
        for pos in prompt_logprobs
    ]


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int | None) -> dict[str, Any]:
    """`completion_usage` for the last delta, with vLLM's prefix-cache hit count."""
    out: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return out


__all__ = [
    "FEATURES",
    "SUPPORTED_FIELDS",
    "finish_reason",
    "logprob_fields",
    "prompt_logprob_field",
    "sampling_kwargs",
    "structured_outputs_kwargs",
    "top_logprobs",
    "usage",
]
