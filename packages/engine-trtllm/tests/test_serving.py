"""`dynamo-run in=http out=trtllm` serving a small real model (the dynamo-testing plugin's
`gpu_engine_server`, and the checks every GPU engine runs): needs TensorRT-LLM and an NVIDIA
GPU, skipped otherwise."""

from __future__ import annotations

import pytest

from dynamo.testing.gpu import GpuServingTests

pytestmark = [pytest.mark.gpu, pytest.mark.slow, pytest.mark.timeout(900)]
pytest.importorskip("tensorrt_llm", reason="needs TensorRT-LLM")


@pytest.fixture(scope="module")
def checks(gpu_engine_server):
    return gpu_engine_server("trtllm", '{"kv_cache_config": {"free_gpu_memory_fraction": 0.3}}')


class TestServing(GpuServingTests):
    """Only what every GPU engine runs."""
