"""Sampling options as per-sequence parameters, without loading a model."""

from __future__ import annotations

import pytest

from dynamo.engines.llamacpp import SamplingParams
from dynamo.engines.llamacpp._sampling import chain_seed
from dynamo.llm.errors import InvalidRequestError

VOCAB = 100


def test_openai_defaults_when_unset():
    p = SamplingParams.from_options({}, VOCAB)
    assert (p.temperature, p.top_p, p.top_k, p.min_p) == (1.0, 1.0, 0, 0.0)
    assert not p.greedy and not p.penalised and p.seed is None and p.logit_bias == ()


def test_every_option_is_read():
    p = SamplingParams.from_options(
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
        },
        VOCAB,
    )
    assert p.greedy and p.penalised
    assert (p.top_p, p.top_k, p.min_p, p.seed) == (0.5, 7, 0.1, 3)
    assert (p.repetition_penalty, p.presence_penalty, p.frequency_penalty) == (1.3, 0.4, -0.2)
    assert p.logit_bias == ((5, -100.0), (7, 2.5))


def test_negative_top_k_means_off():
    assert SamplingParams.from_options({"top_k": -1}, VOCAB).top_k == 0


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
    ],
)
def test_bad_values_name_their_field(options, param):
    with pytest.raises(InvalidRequestError) as e:
        SamplingParams.from_options(options, VOCAB)
    assert e.value.param == param


def test_chain_seed_is_32_bit_and_never_random():
    random = 0xFFFFFFFF
    assert chain_seed(None) == random
    assert chain_seed(42) == 42
    assert chain_seed(2**32 + 42) == 42
    assert chain_seed(-1) != random
    assert chain_seed(random) != random
