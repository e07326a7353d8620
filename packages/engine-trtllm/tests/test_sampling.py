"""A PreprocessedRequest as TensorRT-LLM SamplingParams arguments."""

from __future__ import annotations

import json

import pytest

from dynamo.engines.trtllm._sampling import (
    FEATURES,
    GUIDED_FEATURES,
    SUPPORTED_FIELDS,
    features_for,
    guided_kwargs,
    hidden_stop_ids,
    sampling_kwargs,
)
from dynamo.llm.errors import ContextLengthExceededError, InvalidRequestError
from dynamo.llm.generation_options import GenerationOptions
from dynamo.testing.engine_units import REFUSED_BY_BOTH, assert_refused, generation_options


def options(**parts) -> GenerationOptions:
    return generation_options(SUPPORTED_FIELDS, [5, 6, 7], **parts)


def test_default_request_samples_at_temperature_one() -> None:
    kwargs = sampling_kwargs(options(), [], max_seq_len=100, guided_decoding=False)
    assert kwargs == {
        "n": 1,
        "max_tokens": 97,  # the room left in the context (TensorRT-LLM's default is 32)
        "min_tokens": None,
        "ignore_eos": False,
        "stop_token_ids": None,
        "seed": None,
        "min_p": None,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "detokenize": False,
        # All three unset would mean greedy in TensorRT-LLM: top_k 0 is "all tokens".
        "top_k": 0,
        "top_p": 1.0,
        "temperature": 1.0,
    }


def test_greedy_is_top_k_one() -> None:
    opts = options(sampling_options={"temperature": 0}, stop_conditions={"max_tokens": 4})
    kwargs = sampling_kwargs(opts, [], max_seq_len=None, guided_decoding=False)
    assert (kwargs["top_k"], kwargs["top_p"], kwargs["temperature"]) == (1, None, None)


def test_every_option_maps() -> None:
    opts = options(
        sampling_options={
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": 40,
            "min_p": 0.05,
            "repetition_penalty": 1.1,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
            "seed": 7,
        },
        stop_conditions={
            "max_tokens": 500,
            "min_tokens": 4,
            "stop_token_ids": [9],
            "stop_token_ids_hidden": [2],
            "ignore_eos": False,
        },
        eos_token_ids=[2, 0],
    )
    kwargs = sampling_kwargs(opts, [9], max_seq_len=100, guided_decoding=False)
    assert kwargs["max_tokens"] == 97  # clamped to the context
    assert kwargs["min_tokens"] == 4 and kwargs["seed"] == 7 and kwargs["min_p"] == 0.05
    assert (kwargs["top_k"], kwargs["top_p"], kwargs["temperature"]) == (40, 0.9, 0.7)
    assert kwargs["repetition_penalty"] == 1.1
    assert (kwargs["presence_penalty"], kwargs["frequency_penalty"]) == (0.5, 0.25)
    # The visible stop id is left to our decoder: TensorRT-LLM would swallow its token.
    assert kwargs["stop_token_ids"] == [2, 0]


def test_ignore_eos() -> None:
    opts = options(
        stop_conditions={"ignore_eos": True, "stop_token_ids": [9], "max_tokens": 3},
        eos_token_ids=[2],
    )
    kwargs = sampling_kwargs(opts, [9], max_seq_len=None, guided_decoding=False)
    assert kwargs["ignore_eos"] is True and kwargs["stop_token_ids"] is None
    assert hidden_stop_ids(options(eos_token_ids=[2, 9]), [9]) == [2]


def test_length_limits() -> None:
    with pytest.raises(ContextLengthExceededError):
        sampling_kwargs(options(), [], max_seq_len=3, guided_decoding=False)
    with pytest.raises(InvalidRequestError, match="needs max_tokens"):
        sampling_kwargs(options(), [], max_seq_len=None, guided_decoding=False)


@pytest.mark.parametrize(
    ("guided", "expected"),
    [
        ({"json": {"type": "object"}}, {"json": {"type": "object"}}),
        ({"regex": "[0-9]+"}, {"regex": "[0-9]+"}),
        ({"choice": ["yes", "no."]}, {"regex": r"(yes|no\.)"}),
        ({"grammar": 'root ::= "x"'}, {"grammar": 'root ::= "x"'}),
        ({"structural_tag": {"a": 1}}, {"structural_tag": json.dumps({"a": 1})}),
    ],
)
def test_guided_decoding(guided, expected) -> None:
    assert guided_kwargs(guided) == expected
    opts = options(sampling_options={"guided_decoding": guided}, stop_conditions={"max_tokens": 2})
    assert (
        sampling_kwargs(opts, [], max_seq_len=None, guided_decoding=True)["guided_decoding"]
        == expected
    )
    with pytest.raises(InvalidRequestError, match="guided_decoding_backend"):
        sampling_kwargs(opts, [], max_seq_len=None, guided_decoding=False)
    with pytest.raises(InvalidRequestError, match="backend"):
        guided_kwargs({**guided, "backend": "outlines"})


def test_features_follow_the_grammar_backend() -> None:
    assert features_for(False) == FEATURES
    assert features_for(True) == FEATURES | GUIDED_FEATURES


@pytest.mark.parametrize(
    ("parts", "param"),
    [
        *REFUSED_BY_BOTH,
        ({"sampling_options": {"logit_bias": {"1": 1.0}}}, "logit_bias"),
        ({"output_options": {"logprobs": 1}}, "logprobs"),
    ],
)
def test_what_trtllm_does_not_do_is_refused(parts, param) -> None:
    assert_refused(SUPPORTED_FIELDS, parts, param)
