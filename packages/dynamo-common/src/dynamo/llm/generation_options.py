"""One reading of a `PreprocessedRequest`'s sampling options and stop conditions, for engines
that hand them to a library (vLLM, SGLang, TensorRT-LLM): each maps these fields to its own
argument names instead of re-reading the wire dict its own way.

What it settles once for all of them:

- unset means the OpenAI default (temperature 1, top_p 1, no top_k, no min_p, no penalties), so
  a request means the same on every engine; `top_k` <= 0 means "all tokens";
- the stop token ids the engine must stop on: the visible `stop_token_ids`, the hidden ones and
  the model's `eos_token_ids`, in that order, without duplicates; with `ignore_eos` only the
  visible ones (our decoder drops hidden stops too, as upstream's `apply_ignore_eos`);
- a value of the wrong type (a string temperature, a fractional top_k, a logit_bias key that is
  no token id) is refused by name (`InvalidRequestError`, a 400), never a 500; ranges are the
  engine's to check, as each library takes different ones;
- fields an engine cannot honour are refused by name (`InvalidRequestError`), never dropped:
  `n`/`best_of` above 1 (the frontend fans those out before they reach an engine), and every
  optional field (`OPTIONAL_FIELDS`: guided decoding, logit bias, log probabilities, ...) that is
  set but not in the engine's `supports`. A field added to the wire later is refused by engines
  that were not taught it, because it is not in their `supports`.

Stop strings are not here: our decoder matches them on the detokenized text and stops the
request (`context.stop_generating()`), so engines run without a detokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dynamo.llm.errors import InvalidRequestError


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """The request's knobs with defaults applied; see the module docstring."""

    prompt: list[int]
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    max_tokens: int | None = None
    min_tokens: int = 0
    ignore_eos: bool = False
    stop_token_ids: tuple[int, ...] = ()
    #: The model's end-of-sequence ids as sent (also with `ignore_eos`), for engines that tell
    #: EOS apart from the other stop ids (llama.cpp, the mocker).
    eos_token_ids: tuple[int, ...] = ()
    #: `sampling_options.guided_decoding` as sent: exactly one of json/regex/choice/grammar.
    guided_decoding: Mapping[str, Any] | None = None
    logit_bias: Mapping[int, float] | None = None
    allowed_token_ids: tuple[int, ...] | None = None
    bad_words_token_ids: tuple[tuple[int, ...], ...] | None = None
    #: `output_options.logprobs`: top alternatives per token (0: the sampled token's only).
    logprobs: int | None = None
    prompt_logprobs: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def guided_kind(self) -> tuple[str, Any] | None:
        """(`json`|`regex`|`choice`|`grammar`|`structural_tag`, value) of the guided-decoding
        constraint, or None."""
        return guided_constraint(self.guided_decoding) if self.guided_decoding else None

    @classmethod
    def from_request(
        cls, request: Mapping[str, Any], supports: Iterable[str] = ()
    ) -> GenerationOptions:
        """Read `request`; `supports` names the `OPTIONAL_FIELDS` this engine honours (the
        others are refused when set)."""
        sampling = _section(request, "sampling_options")
        stop = _section(request, "stop_conditions")
        output = _section(request, "output_options")
        prompt = _token_ids(request.get("token_ids"), "token_ids")
        if not prompt:
            raise InvalidRequestError("the request has no prompt token ids", param="token_ids")
        if request.get("batch_token_ids"):
            raise InvalidRequestError(
                "batched prompts (batch_token_ids) are not supported; send one prompt per request",
                param="batch_token_ids",
            )
        _refuse_unsupported((sampling, output, stop), frozenset(supports))

        top_k = _integer(sampling, "top_k")
        ignore_eos = bool(stop.get("ignore_eos"))
        eos = _token_ids(request.get("eos_token_ids"), "eos_token_ids")
        stop_ids = _token_ids(stop.get("stop_token_ids"), "stop_token_ids")
        if not ignore_eos:
            stop_ids += _token_ids(stop.get("stop_token_ids_hidden"), "stop_token_ids_hidden")
            stop_ids += eos
        max_tokens = _integer(stop, "max_tokens")
        if max_tokens is not None and max_tokens < 0:
            raise InvalidRequestError("max_tokens must not be negative", param="max_tokens")
        guided = sampling.get("guided_decoding") or None
        if guided is not None and not isinstance(guided, Mapping):
            raise InvalidRequestError("guided_decoding must be an object", param="guided_decoding")
        allowed = _token_ids(sampling.get("allowed_token_ids"), "allowed_token_ids")
        bad_words = sampling.get("bad_words_token_ids") or ()
        if not isinstance(bad_words, list | tuple):
            raise InvalidRequestError(
                "bad_words_token_ids must be a list of token id lists", param="bad_words_token_ids"
            )
        banned = tuple(tuple(_token_ids(w, "bad_words_token_ids")) for w in bad_words)
        return cls(
            prompt=prompt,
            temperature=_number(sampling, "temperature", 1.0),
            top_p=_number(sampling, "top_p", 1.0),
            top_k=None if top_k is None or top_k <= 0 else top_k,
            min_p=_number(sampling, "min_p", 0.0),
            repetition_penalty=_number(sampling, "repetition_penalty", 1.0),
            presence_penalty=_number(sampling, "presence_penalty", 0.0),
            frequency_penalty=_number(sampling, "frequency_penalty", 0.0),
            seed=_integer(sampling, "seed"),
            max_tokens=max_tokens,
            min_tokens=_integer(stop, "min_tokens") or 0,
            ignore_eos=ignore_eos,
            stop_token_ids=tuple(dict.fromkeys(stop_ids)),
            eos_token_ids=tuple(eos),
            guided_decoding=guided,
            logit_bias=_logit_bias(sampling.get("logit_bias")),
            allowed_token_ids=tuple(allowed) or None,
            bad_words_token_ids=banned or None,
            logprobs=_integer(output, "logprobs"),
            prompt_logprobs=_integer(output, "prompt_logprobs"),
        )


def guided_constraint(guided: Mapping[str, Any]) -> tuple[str, Any]:
    """The one constraint of a `guided_decoding` object as (kind, value)."""
    for kind in ("json", "regex", "choice", "grammar", "structural_tag"):
        value = guided.get(kind)
        if value is not None and value != []:
            return kind, value
    raise InvalidRequestError(
        "guided_decoding names no constraint (json, regex, choice or grammar)",
        param="guided_decoding",
    )


#: Fields an engine must opt into (`supports`): sampling options, output options and stop
#: conditions by name.
OPTIONAL_FIELDS = frozenset(
    {
        "guided_decoding",
        "logit_bias",
        "allowed_token_ids",
        "bad_words_token_ids",
        "use_beam_search",
        "length_penalty",
        "logprobs",
        "prompt_logprobs",
        "max_thinking_tokens",
    }
)


def _section(request: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = request.get(name) or {}
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"{name} must be an object", param=name)
    return value


def _number(section: Mapping[str, Any], key: str, default: float) -> float:
    value = section.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(f"{key} must be a number", param=key)
    return float(value)


def _integer(section: Mapping[str, Any], key: str) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{key} must be an integer", param=key)
    return value


_INT = frozenset({int})


def _token_ids(value: Any, name: str) -> list[int]:
    if not value:
        return []
    if not isinstance(value, list | tuple) or not (
        # Plain ints (all of them, from JSON), checked in C: a loop in Python took 0.64 ms of
        # a worker's time to first token on a 7.8k-token prompt (docs/performance.md).
        _INT.issuperset(map(type, value))
        or all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    ):
        raise InvalidRequestError(f"{name} must be a list of token ids", param=name)
    return list(value)


def _logit_bias(value: Any) -> dict[int, float] | None:
    if not value:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRequestError("logit_bias must map token ids to biases", param="logit_bias")
    bias: dict[int, float] = {}
    for key, amount in value.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise InvalidRequestError(
                f"logit_bias key {key!r} is not a token id", param="logit_bias"
            ) from None
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            raise InvalidRequestError("logit_bias values must be numbers", param="logit_bias")
        bias[token] = float(amount)
    return bias


def _is_set(value: Any) -> bool:
    return value is not None and value is not False and value != [] and value != {}


def _refuse_unsupported(sections: tuple[Mapping[str, Any], ...], supports: frozenset[str]) -> None:
    sampling = sections[0]
    for key in ("n", "best_of"):
        if (sampling.get(key) or 1) > 1:
            raise InvalidRequestError(
                f"{key} > 1 reached the engine; the frontend sends one request per choice",
                param=key,
            )
    for key in sorted(OPTIONAL_FIELDS - supports):
        if any(_is_set(section.get(key)) for section in sections):
            raise InvalidRequestError(f"'{key}' is not supported by this engine", param=key)


__all__ = ["OPTIONAL_FIELDS", "GenerationOptions", "guided_constraint"]
