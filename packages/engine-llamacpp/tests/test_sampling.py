"""Sampling options (read by `GenerationOptions`) as per-sequence llama.cpp parameters, without
loading a model."""

from __future__ import annotations

import pytest

from dynamo.engines.llamacpp import SamplingParams
from dynamo.engines.llamacpp._sampling import SUPPORTED_FIELDS, chain_seed
from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.generation_options import GenerationOptions

VOCAB = 100


def params(sampling: dict) -> SamplingParams:
    """As the engine reads a request: `GenerationOptions` first, then llama.cpp's own checks."""
    request = {"token_ids": [1], "sampling_options": sampling}
    return SamplingParams.from_options(
        GenerationOptions.from_request(request, SUPPORTED_FIELDS), VOCAB
    )


def test_openai_defaults_when_unset():
    p = params({})
    o = p.options
    assert (o.temperature, o.top_p, o.top_k, o.min_p) == (1.0, 1.0, None, 0.0)
    assert not o.greedy and not p.penalised and o.seed is None and o.logit_bias is None
    assert p.grammar is None


def test_every_option_passes_llamacpps_checks():
    p = params(
        {
            "temperature": 0,
            "top_p": 0.5,
            "top_k": 7,
            "min_p": 0.1,
            "repetition_penalty": 1.3,
            "presence_penalty": 0.4,
            "frequency_penalty": -0.2,
            "seed": 3,
            "logit_bias": {"5": -100, 7: 2.5},
            "guided_decoding": {"regex": "[ab]+"},
        }
    )
    o = p.options
    assert o.greedy and p.penalised
    assert (o.top_p, o.top_k, o.min_p, o.seed) == (0.5, 7, 0.1, 3)
    assert o.logit_bias == {5: -100.0, 7: 2.5}
    assert p.grammar is not None and "root" in p.grammar


def test_negative_top_k_means_off():
    assert params({"top_k": -1}).options.top_k is None


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"temperature": -0.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"min_p": 2}, "min_p"),
        ({"top_k": 1.5}, "top_k"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"seed": "x"}, "seed"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"logit_bias": {str(VOCAB): 1}}, "logit_bias"),
        ({"logit_bias": {"1": "x"}}, "logit_bias"),
        ({"guided_decoding": "json"}, "guided_decoding"),
    ],
)
def test_bad_values_name_their_field(options, param):
    with pytest.raises(InvalidRequestError) as e:
        params(options)
    assert e.value.param == param


def test_fields_llamacpp_cannot_honour_are_refused_by_name():
    for sampling, output, param in (
        ({"allowed_token_ids": [1]}, {}, "allowed_token_ids"),
        ({}, {"prompt_logprobs": 1}, "prompt_logprobs"),
    ):
        request = {"token_ids": [1], "sampling_options": sampling, "output_options": output}
        with pytest.raises(InvalidRequestError) as e:
            GenerationOptions.from_request(request, SUPPORTED_FIELDS)
        assert e.value.param == param


def test_chain_seed_is_32_bit_and_never_random():
    random = 0xFFFFFFFF
    assert chain_seed(None) == random
    assert chain_seed(42) == 42
    assert chain_seed(2**32 + 42) == 42
    assert chain_seed(-1) != random
    assert chain_seed(random) != random
