"""Argument mapping, without loading a model."""

from __future__ import annotations

import pytest

from dynamo.engines.llamacpp import llama_kwargs, sampling_kwargs
from dynamo.llm import EngineConfig, EngineError


def test_openai_defaults_when_unset():
    assert sampling_kwargs({}) == {
        "temp": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "min_p": 0.0,
        "repeat_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
    }


def test_every_sampling_option_is_mapped():
    got = sampling_kwargs(
        {
            "temperature": 0.0,
            "top_p": 0.5,
            "top_k": 7,
            "min_p": 0.1,
            "repetition_penalty": 1.3,
            "presence_penalty": 0.4,
            "frequency_penalty": -0.2,
            "seed": 3,
        }
    )
    assert got == {
        "temp": 0.0,
        "top_p": 0.5,
        "top_k": 7,
        "min_p": 0.1,
        "repeat_penalty": 1.3,
        "presence_penalty": 0.4,
        "frequency_penalty": -0.2,
    }


def test_negative_top_k_means_off():
    assert sampling_kwargs({"top_k": -1})["top_k"] == 0


def test_context_length_default_and_cap():
    assert llama_kwargs(EngineConfig("m"), 2048)["n_ctx"] == 2048
    assert llama_kwargs(EngineConfig("m"), 131072)["n_ctx"] == 8192
    assert llama_kwargs(EngineConfig("m", context_length=100_000), 131072)["n_ctx"] == 100_000


def test_extra_engine_args_pass_through_and_unknown_keys_fail():
    kwargs = llama_kwargs(EngineConfig("m", extra_engine_args={"n_threads": 2, "n_batch": 64}), 512)
    assert kwargs["n_threads"] == 2 and kwargs["n_batch"] == 64
    with pytest.raises(EngineError, match="does not take n_bogus"):
        llama_kwargs(EngineConfig("m", extra_engine_args={"n_bogus": 1}), 512)
    with pytest.raises(EngineError, match="model_path"):
        llama_kwargs(EngineConfig("m", extra_engine_args={"model_path": "x"}), 512)
