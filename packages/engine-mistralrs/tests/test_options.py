from __future__ import annotations

import pytest

from dynamo.engines.mistralrs import chat_request_kwargs, runner_kwargs
from dynamo.llm import EngineConfig, EngineError


def test_request_mapping_root_level_wins_over_nvext():
    body = {
        "max_completion_tokens": 9,
        "max_tokens": 99,
        "temperature": 0.0,
        "top_p": 0.5,
        "stop": "END",
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "top_k": 5,
        "nvext": {"top_k": 50, "min_p": 0.05, "repetition_penalty": 1.2, "ignore_eos": True},
    }
    assert chat_request_kwargs(body, "m") == {
        "model": "m",
        "max_tokens": 9,
        "temperature": 0.0,
        "top_p": 0.5,
        "top_k": 5,
        "min_p": 0.05,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "repetition_penalty": 1.2,
        "stop_seqs": ["END"],
        "ignore_eos": True,
    }


def test_unset_options_are_left_to_mistralrs():
    assert chat_request_kwargs({}, "m") == {"model": "m", "ignore_eos": False}


def test_runner_kwargs(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    kw = runner_kwargs(EngineConfig("m", extra_engine_args={"max_seqs": 4, "seed": 1}))
    assert kw == {"token_source": "none", "max_seqs": 4, "seed": 1}
    monkeypatch.setenv("HF_TOKEN", "x")
    assert runner_kwargs(EngineConfig("m"))["token_source"] == "env:HF_TOKEN"
    with pytest.raises(EngineError, match="does not take warp_speed"):
        runner_kwargs(EngineConfig("m", extra_engine_args={"warp_speed": 9}))
