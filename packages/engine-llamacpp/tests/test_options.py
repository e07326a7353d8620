"""Engine settings from the flags and `--extra-engine-args`, without loading a model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dynamo.engines.llamacpp import EngineSettings, default_threads
from dynamo.engines.llamacpp._options import (
    DEFAULT_BATCH,
    DEFAULT_PARALLEL,
    available_memory,
    kv_bytes_per_token,
    parallel_for_memory,
)
from dynamo.llm import EngineConfig, EngineError


def settings(model_context: int | None = 2048, **kw) -> EngineSettings:
    return EngineSettings.from_config(EngineConfig("m", **kw), model_context)


def test_defaults():
    s = settings()
    # n_parallel unset: chosen from the machine once the model's KV size is known.
    assert (s.n_ctx, s.n_parallel, s.n_batch) == (2048, None, DEFAULT_BATCH)
    assert not s.prefix_cache and not s.verbose
    assert s.context_params["n_batch"] == DEFAULT_BATCH


def test_context_length_default_and_cap():
    assert settings(131072).n_ctx == 8192
    assert settings(None).n_ctx == 8192
    assert settings(131072, context_length=100_000).n_ctx == 100_000
    assert settings(extra_engine_args={"n_ctx": 512}).n_ctx == 512
    assert settings(context_length=512, extra_engine_args={"n_ctx": 512}).n_ctx == 512


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"extra_engine_args": {"n_ctx": 0}}, "n_ctx must be a positive integer"),
        ({"extra_engine_args": {"n_ctx": "abc"}}, "n_ctx must be a positive integer"),
        ({"extra_engine_args": {"n_ctx": 64.5}}, "n_ctx must be a positive integer"),
        ({"context_length": -5}, "--context-length must be a positive integer"),
        ({"context_length": 512, "extra_engine_args": {"n_ctx": 1024}}, "disagrees"),
        ({"extra_engine_args": {"n_parallel": 0}}, "n_parallel must be a positive integer"),
        ({"extra_engine_args": {"n_parallel": True}}, "n_parallel must be a positive integer"),
        ({"extra_engine_args": {"n_parallel": 8, "n_batch": 4}}, "n_batch .4. must be at least"),
        ({"extra_engine_args": {"prefix_cache": "yes"}}, "prefix_cache must be true or false"),
    ],
)
def test_bad_values_are_refused(kw, message):
    with pytest.raises(EngineError, match=message):
        settings(**kw)


def test_llama_struct_fields_pass_through():
    s = settings(
        extra_engine_args={
            "n_threads": 3,
            "n_batch": 64,
            "n_gpu_layers": 0,
            "check_tensors": False,
            "rope_freq_base": 10000,
            "n_parallel": 2,
            "prefix_cache": True,
        }
    )
    assert s.context_params["n_threads"] == 3 and s.n_batch == 64
    assert s.model_params == {"n_gpu_layers": 0, "check_tensors": False}
    assert s.context_params["rope_freq_base"] == 10000.0
    assert s.n_parallel == 2 and s.prefix_cache


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"n_bogus": 1}, "does not take n_bogus"),
        # Set by the engine itself, or pointers: not settable.
        ({"n_seq_max": 4}, "does not take n_seq_max"),
        ({"kv_unified": True}, "does not take kv_unified"),
        ({"tensor_split": [1.0]}, "does not take tensor_split"),
        ({"model_path": "x"}, "does not take model_path"),
        ({"n_threads": "4"}, "n_threads must be an integer"),
        ({"n_threads": 2.5}, "n_threads must be an integer"),
        ({"check_tensors": 1}, "check_tensors must be true or false"),
        ({"rope_freq_base": "x"}, "rope_freq_base must be a number"),
        ({"n_batch": -1}, "n_batch is out of range"),
    ],
)
def test_unknown_or_mistyped_llama_fields_fail(extra, message):
    with pytest.raises(EngineError, match=message):
        settings(extra_engine_args=extra)


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
    assert settings().context_params.get("n_threads") == threads
    assert settings(extra_engine_args={"n_threads": 3}).context_params["n_threads"] == 3


def test_available_memory_is_the_kernels_capped_by_the_cgroup(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  16000000 kB\nMemAvailable:  8000000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert available_memory(meminfo, cgroup) == 8_000_000 * 1024  # no cgroup files
    (cgroup / "memory.max").write_text("max\n")
    assert available_memory(meminfo, cgroup) == 8_000_000 * 1024
    (cgroup / "memory.max").write_text(f"{2 * 2**30}\n")
    (cgroup / "memory.current").write_text(f"{2**29}\n")
    assert available_memory(meminfo, cgroup) == 2 * 2**30 - 2**29  # the limit binds
    assert available_memory(tmp_path / "none", tmp_path / "none") is None


def test_kv_bytes_per_token_is_what_llamacpp_allocates():
    # SmolLM2-135M: 30 layers, 576 wide, 9 heads, 3 KV heads. llama.cpp reports 90 MiB
    # (K 45 + V 45, f16) for 4096 cells.
    assert kv_bytes_per_token(30, 576, 9, 3) * 4096 == 90 * 2**20
    assert kv_bytes_per_token(30, 576, 9, 3, type_k=8, type_v=8) < kv_bytes_per_token(30, 576, 9, 3)


def test_parallel_for_memory_keeps_half_of_what_is_left():
    slot, model = 100, 1000
    assert parallel_for_memory(slot, model, None) == DEFAULT_PARALLEL  # unknown: the default
    assert parallel_for_memory(slot, model, 10**9) == DEFAULT_PARALLEL  # never above it
    assert parallel_for_memory(slot, model, model + 2 * slot * 2) == 2
    assert parallel_for_memory(slot, model, model + 2 * slot * 3 + 1) == 3
    assert parallel_for_memory(slot, model, model + slot) == 1  # never below one
    assert parallel_for_memory(slot, model, 0) == 1
