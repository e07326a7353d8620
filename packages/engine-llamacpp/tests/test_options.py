"""Argument mapping, without loading a model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dynamo.engines.llamacpp import llama_kwargs, sampling_kwargs
from dynamo.engines.llamacpp._options import default_threads
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


def _topology(root: Path, cpu: int, package: int, core: int) -> None:
    folder = root / f"cpu{cpu}" / "topology"
    folder.mkdir(parents=True)
    (folder / "physical_package_id").write_text(f"{package}\n")
    (folder / "core_id").write_text(f"{core}\n")


def test_default_threads_counts_physical_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    # Two cores with two hyper-threads each.
    for cpu in range(4):
        _topology(tmp_path, cpu, package=0, core=cpu // 2)
    no_quota = tmp_path / "cpu.max"
    no_quota.write_text("max 100000\n")
    assert default_threads(tmp_path, no_quota) == 2
    quota = tmp_path / "quota"
    quota.write_text("50000 100000\n")  # half a CPU rounds up to one thread
    assert default_threads(tmp_path, quota) == 1
    assert default_threads(tmp_path, tmp_path / "no-cgroup-file") == 2


def test_default_threads_unknown_topology(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 7})
    _topology(tmp_path, 0, package=0, core=0)
    assert default_threads(tmp_path, tmp_path / "cpu.max") is None


def test_n_threads_default_and_override():
    threads = default_threads()
    kwargs = llama_kwargs(EngineConfig("m"), 512)
    assert kwargs.get("n_threads") == threads
    kwargs = llama_kwargs(EngineConfig("m", extra_engine_args={"n_threads": 3}), 512)
    assert kwargs["n_threads"] == 3
