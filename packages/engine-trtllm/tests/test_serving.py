"""`dynamo-run in=http out=trtllm` serving a small real model (root conftest: `gpu_engine_server`):
needs TensorRT-LLM and an NVIDIA GPU, skipped otherwise."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.slow, pytest.mark.timeout(900)]
pytest.importorskip("tensorrt_llm", reason="needs TensorRT-LLM")


@pytest.fixture(scope="module")
def checks(gpu_engine_server):
    return gpu_engine_server("trtllm", '{"kv_cache_config": {"free_gpu_memory_fraction": 0.3}}')


def test_greedy_is_repeatable_and_counts_usage(checks) -> None:
    checks.greedy_is_repeatable()


def test_streams_and_stops_at_max_tokens_and_stop_strings(checks) -> None:
    checks.streams_and_stops()


def test_seeded_sampling_is_repeatable(checks) -> None:
    checks.seeded_is_repeatable()
