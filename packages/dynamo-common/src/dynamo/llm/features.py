"""What an engine can honour, declared by the engine and enforced by the frontend.

Nothing a client asks for may be silently dropped. Some request fields need the engine's help
(log probabilities, structured output, sampling knobs); an engine lists the ones it implements in
`Engine.features`, the list is published on the model card (`ModelDeploymentCard.features`, so a
frontend knows it for a worker on another host), and the frontend answers a request that needs
anything else with a 400 naming the field (`check_features`).

Fields the frontend implements itself for every engine (`max_tokens`, `n`, `best_of`, lists of
prompts, tool-call and reasoning parsing) are not features: they work everywhere. Those it
implements while detokenizing (stop strings, `stop_token_ids`, `min_tokens`, `ignore_eos`,
`skip_special_tokens`, raw and token prompts) work everywhere the frontend detokenizes (Backend
models); a text-level engine (Chat / Completion) must declare them to get them.

An engine whose output does not come from sampling at all (the echo engines, the mocker)
declares `UNSAMPLED`: the sampling knobs are then accepted and have no effect, which is the right
answer for such an engine (and the one clients of `dynamo-run`'s text mode, which always sends a
temperature, rely on).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from dynamo.llm.errors import InvalidRequestError


class Feature(StrEnum):
    """A request capability an engine may declare."""

    # Sampling knobs (sampling_options).
    TEMPERATURE = "temperature"
    TOP_P = "top_p"
    TOP_K = "top_k"
    MIN_P = "min_p"
    REPETITION_PENALTY = "repetition_penalty"
    PRESENCE_PENALTY = "presence_penalty"
    FREQUENCY_PENALTY = "frequency_penalty"
    SEED = "seed"
    LOGIT_BIAS = "logit_bias"
    # Output options.
    LOGPROBS = "logprobs"
    PROMPT_LOGPROBS = "prompt_logprobs"
    # Structured output (sampling_options.guided_decoding), one feature per constraint kind.
    GUIDED_JSON = "guided_json"
    GUIDED_REGEX = "guided_regex"
    GUIDED_CHOICE = "guided_choice"
    GUIDED_GRAMMAR = "guided_grammar"
    # Stop conditions the frontend cannot enforce alone.
    MAX_THINKING_TOKENS = "max_thinking_tokens"
    # What the frontend does itself for token-level (Backend) models, but a text-level (Chat /
    # Completion) engine must do for its own: needed only by requests to such engines.
    STOP = "stop"
    STOP_TOKEN_IDS = "stop_token_ids"
    MIN_TOKENS = "min_tokens"
    IGNORE_EOS = "ignore_eos"
    INCLUDE_STOP_STR = "include_stop_str_in_output"
    SKIP_SPECIAL_TOKENS = "skip_special_tokens"
    RAW_PROMPT = "use_raw_prompt"
    ANNOTATIONS = "annotations"
    TOKEN_PROMPT = "token_prompt"
    #: The engine renders `tools` (and `chat_template_kwargs`, `reasoning_effort`) into its
    #: prompt itself.
    TOOLS = "tools"
    TEMPLATE_ARGS = "chat_template_kwargs"
    #: The engine does not sample: every sampling knob is accepted and has no effect.
    UNSAMPLED = "unsampled"


#: The knobs that have no effect on an `UNSAMPLED` engine.
SAMPLING_KNOBS = frozenset(
    {
        Feature.TEMPERATURE,
        Feature.TOP_P,
        Feature.TOP_K,
        Feature.MIN_P,
        Feature.REPETITION_PENALTY,
        Feature.PRESENCE_PENALTY,
        Feature.FREQUENCY_PENALTY,
        Feature.SEED,
        Feature.LOGIT_BIAS,
    }
)

#: What a card without a declaration (an upstream worker's) is taken to honour: the sampling
#: options every upstream engine handler passes on. Log probabilities and structured output are
#: refused for it rather than guessed.
UNDECLARED = frozenset(SAMPLING_KNOBS - {Feature.LOGIT_BIAS})

#: The most top alternatives a client may ask for per token (OpenAI's and vLLM's default limit).
MAX_TOP_LOGPROBS = 20


def parse_features(values: Iterable[str] | None) -> frozenset[Feature]:
    """A declared feature list (as it travels on a card) as `Feature`s; None means undeclared.

    Names this version does not know are dropped: a newer worker may declare more than an older
    frontend can ask for, and none of them can be requested through the older frontend anyway.
    """
    if values is None:
        return UNDECLARED
    known = {f.value for f in Feature}
    return frozenset(Feature(v) for v in values if v in known)


def declare(card: Any, features: Iterable[Feature], engine: str | None = None) -> None:
    """Write an engine's features into its model card (`features`), whence they travel to remote
    frontends, and its `out=` name (for error messages) into the card's `runtime_config`."""
    card.features = sorted(f.value for f in features)
    if engine is not None:
        card.runtime_config["engine"] = engine


def engine_features(engine_cls: Any, engine: Any = None) -> frozenset[Feature]:
    """What an engine declares: its instance's `features`, else its class's, else undeclared."""
    return frozenset(
        getattr(engine, "features", None) or getattr(engine_cls, "features", UNDECLARED)
    )


def guided_feature(kind: str) -> Feature:
    """The feature a guided-decoding kind (`json`, `regex`, `choice`, `grammar`) needs."""
    return Feature(f"guided_{kind}")


def missing_features(
    needed: Mapping[Feature, str], features: frozenset[Feature]
) -> list[tuple[Feature, str]]:
    """The (feature, request field) pairs of `needed` that `features` does not cover."""
    unsampled = Feature.UNSAMPLED in features
    return [
        (feature, param)
        for feature, param in needed.items()
        if feature not in features and not (unsampled and feature in SAMPLING_KNOBS)
    ]


def check_features(
    needed: Mapping[Feature, str], features: frozenset[Feature], model: str, engine: Any = None
) -> None:
    """Raise a 400 naming the first request field whose feature the model's engine lacks."""
    missing = missing_features(needed, features)
    if not missing:
        return
    feature, param = missing[0]
    by = f" (engine {engine})" if engine else ""
    raise InvalidRequestError(
        f"'{param}' is not supported by model '{model}'{by}: its engine does not implement "
        f"{feature.value}",
        param=param,
        code="unsupported_parameter",
    )


__all__ = [
    "MAX_TOP_LOGPROBS",
    "SAMPLING_KNOBS",
    "UNDECLARED",
    "Feature",
    "check_features",
    "declare",
    "engine_features",
    "guided_feature",
    "missing_features",
    "parse_features",
]
