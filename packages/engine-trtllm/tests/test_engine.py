"""The engine class without TensorRT-LLM: how it plugs in, and the error when it is missing."""

from __future__ import annotations

import importlib.util

import pytest

from dynamo.engines.trtllm import TrtllmEngine
from dynamo.llm import EngineConfig, EngineError, ModelType
from dynamo.llm.engine import installed_engines, load_engine_class

HAS_TRTLLM = importlib.util.find_spec("tensorrt_llm") is not None


def test_entry_point_names_the_engine() -> None:
    assert installed_engines()["trtllm"].load() is TrtllmEngine
    assert TrtllmEngine.model_type is ModelType.Backend
    # The entry point ships in the engine's own distribution (the pip install hints name it).
    assert installed_engines()["trtllm"].dist.name == "dynamo-engine-trtllm"
    # MPI assigns ranks: the flags of SGLang's and vLLM's own multi-node launch do not apply.
    assert {"tensor_parallel_size", "num_nodes", "base_gpu_id"} <= TrtllmEngine.accepted_flags
    assert not {"node_rank", "leader_addr"} & TrtllmEngine.accepted_flags


@pytest.mark.skipif(HAS_TRTLLM, reason="TensorRT-LLM is installed here")
async def test_without_trtllm_start_says_what_to_install() -> None:
    with pytest.raises(
        EngineError,
        match="out=trtllm needs tensorrt-llm, which is not installed: pip install tensorrt-llm",
    ):
        await TrtllmEngine.start(EngineConfig(model_name="m", model_path="/nowhere"))


@pytest.mark.skipif(HAS_TRTLLM, reason="the library is installed here")
def test_a_missing_library_is_named_before_any_model_loads() -> None:
    with pytest.raises(
        EngineError,
        match="out=trtllm needs tensorrt-llm, which is not installed: pip install tensorrt-llm",
    ):
        load_engine_class("trtllm")


def test_pip_install_brings_tensorrt_llm() -> None:
    """The library is a real dependency (the workspace only leaves it out of its own lock)."""
    from importlib.metadata import requires

    reqs = requires("dynamo-engine-trtllm") or []
    assert any(r.replace(" ", "").startswith("tensorrt-llm>=") for r in reqs)
