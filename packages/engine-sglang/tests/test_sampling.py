"""A PreprocessedRequest as SGLang sampling params and async_generate arguments."""

from __future__ import annotations

import json

import pytest

from dynamo.engines.sglang._sampling import (
    FEATURES,
    SUPPORTED_FIELDS,
    features_for,
    generate_kwargs,
    guided_params,
    sampling_params,
)
from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.features import Feature
from dynamo.llm.generation_options import GenerationOptions
from dynamo.testing.engine_units import REFUSED_BY_BOTH, assert_refused, generation_options


def options(**parts) -> GenerationOptions:
    return generation_options(SUPPORTED_FIELDS, [5, 6], **parts)


def test_defaults() -> None:
    assert sampling_params(options(), deterministic=False) == {
        "max_new_tokens": None,  # explicit: SGLang's default for a missing key is 128
        "min_new_tokens": 0,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": -1,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "ignore_eos": False,
        "stop_token_ids": None,
    }
    assert generate_kwargs(options()) == {}


def test_every_option_maps() -> None:
    opts = options(
        sampling_options={
            "temperature": 0.0,
            "top_p": 0.9,
            "top_k": 40,
            "min_p": 0.05,
            "repetition_penalty": 1.1,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
            "seed": 7,
            "logit_bias": {"3": -100},
        },
        stop_conditions={
            "max_tokens": 32,
            "min_tokens": 4,
            "stop_token_ids": [9],
            "stop_token_ids_hidden": [2],
        },
        eos_token_ids=[2, 0],
        output_options={"logprobs": 5},
    )
    assert sampling_params(opts, deterministic=True) == {
        "max_new_tokens": 32,
        "min_new_tokens": 4,
        "temperature": 0.0,
        "top_p": 0.9,
        "top_k": 40,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "ignore_eos": False,
        "stop_token_ids": [9, 2, 0],
        "sampling_seed": 7,
        "logit_bias": {"3": -100.0},
    }
    assert generate_kwargs(opts) == {
        "return_logprob": True,
        "top_logprobs_num": 5,
        "logprob_start_len": -1,
    }


def test_ignore_eos_keeps_only_visible_stop_ids() -> None:
    opts = options(
        stop_conditions={"ignore_eos": True, "stop_token_ids": [9], "stop_token_ids_hidden": [2]},
        eos_token_ids=[2],
    )
    params = sampling_params(opts, deterministic=False)
    assert params["ignore_eos"] is True and params["stop_token_ids"] == [9]


def test_a_seed_needs_deterministic_inference() -> None:
    opts = options(sampling_options={"seed": 1})
    with pytest.raises(InvalidRequestError, match="enable_deterministic_inference") as e:
        sampling_params(opts, deterministic=False)
    assert e.value.param == "seed"
    assert Feature.SEED not in features_for(False) and Feature.SEED in features_for(True)
    assert features_for(False) == FEATURES


@pytest.mark.parametrize(
    ("guided", "expected"),
    [
        ({"json": {"type": "object"}}, {"json_schema": json.dumps({"type": "object"})}),
        ({"json": '{"type": "string"}'}, {"json_schema": '{"type": "string"}'}),
        ({"regex": "[0-9]+"}, {"regex": "[0-9]+"}),
        ({"choice": ["yes", "no.", "a|b"]}, {"regex": r"(yes|no\.|a\|b)"}),
        ({"grammar": 'root ::= "x"'}, {"ebnf": 'root ::= "x"'}),
        ({"structural_tag": {"type": "x"}}, {"structural_tag": '{"type": "x"}'}),
    ],
)
def test_guided_decoding(guided, expected) -> None:
    assert guided_params(guided) == expected
    opts = options(sampling_options={"guided_decoding": guided})
    params = sampling_params(opts, deterministic=False)
    assert {k: params[k] for k in expected} == expected


@pytest.mark.parametrize("key", ["backend", "whitespace_pattern"])
def test_per_request_grammar_settings_are_refused(key) -> None:
    with pytest.raises(InvalidRequestError, match=key):
        guided_params({"regex": "a", key: "x"})


@pytest.mark.parametrize(
    ("parts", "param"),
    [
        *REFUSED_BY_BOTH,
        ({"sampling_options": {"allowed_token_ids": [1]}}, "allowed_token_ids"),
        ({"sampling_options": {"n": 2}}, "n"),
    ],
)
def test_what_sglang_does_not_do_is_refused(parts, param) -> None:
    assert_refused(SUPPORTED_FIELDS, parts, param)
