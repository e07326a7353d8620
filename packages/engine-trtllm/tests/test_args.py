"""dynamo-run's flags as TensorRT-LLM LLM arguments: mapping, MPI multi-node, extra args."""

from __future__ import annotations

import pytest

from dynamo.engines.trtllm._args import (
    EVENT_BUFFER_MAX_SIZE,
    LAUNCHED_BY_MPI,
    check_mpi,
    launch_command,
    plan_llm_args,
)
from dynamo.llm import EngineConfig, EngineError
from dynamo.testing.engine_units import flag_mistakes

#: A slice of the real names (the engine reads them all from TorchLlmArgs).
KNOWN = frozenset(
    {
        "model",
        "tokenizer",
        "skip_tokenizer_init",
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "gpus_per_node",
        "max_seq_len",
        "kv_cache_config",
        "enable_iter_perf_stats",
        "guided_decoding_backend",
        "enable_attention_dp",
        "backend",
        "max_batch_size",
    }
)


def config(**kw) -> EngineConfig:
    return EngineConfig(model_name="tiny", model_path="/models/tiny", **kw)


def plan(cfg: EngineConfig, distributed: bool = False, environ: dict | None = None):
    return plan_llm_args(cfg, KNOWN, distributed=distributed, environ=environ or {})


def test_defaults() -> None:
    p = plan(config())
    assert p.kwargs == {
        "model": "/models/tiny",
        "tensor_parallel_size": 1,
        "kv_cache_config": {"tokens_per_block": 16, "enable_block_reuse": True},
    }
    assert (p.block_size, p.world_size, p.publishes_events, p.guided_decoding) == (
        16,
        1,
        False,
        False,
    )


def test_every_flag_maps() -> None:
    p = plan(
        config(
            model_config="/models/tok",
            context_length=4096,
            kv_cache_block_size=32,
            tensor_parallel_size=4,
        )
    )
    assert p.kwargs == {
        "model": "/models/tiny",
        "tokenizer": "/models/tok",
        "tensor_parallel_size": 4,
        "max_seq_len": 4096,
        "kv_cache_config": {"tokens_per_block": 32, "enable_block_reuse": True},
    }
    assert p.block_size == 32 and p.world_size == 4


def test_a_distributed_worker_gets_kv_events_and_stats() -> None:
    p = plan(config(), distributed=True)
    assert p.kwargs["kv_cache_config"]["event_buffer_max_size"] == EVENT_BUFFER_MAX_SIZE
    assert p.kwargs["enable_iter_perf_stats"] is True and p.publishes_events
    with pytest.raises(EngineError, match="block reuse"):
        plan(config(extra_engine_args={"kv_cache_config": {"enable_block_reuse": False}}), True)


def test_extra_engine_args_merge_and_are_checked() -> None:
    p = plan(
        config(
            extra_engine_args={
                "pipeline_parallel_size": 2,
                "guided_decoding_backend": "xgrammar",
                "kv_cache_config": {"free_gpu_memory_fraction": 0.5, "tokens_per_block": 64},
                "backend": "pytorch",
            }
        )
    )
    assert p.kwargs["kv_cache_config"] == {
        "free_gpu_memory_fraction": 0.5,
        "tokens_per_block": 64,
        "enable_block_reuse": True,
    }
    assert p.block_size == 64 and p.world_size == 2 and p.guided_decoding
    with pytest.raises(EngineError, match="PyTorch backend only"):
        plan(config(extra_engine_args={"backend": "tensorrt"}))
    with pytest.raises(EngineError, match="tokens_per_block 64 disagrees"):
        plan(
            config(
                kv_cache_block_size=32,
                extra_engine_args={"kv_cache_config": {"tokens_per_block": 64}},
            )
        )
    with pytest.raises(EngineError, match="tensor_parallel_size 2 disagrees"):
        plan(config(tensor_parallel_size=4, extra_engine_args={"tensor_parallel_size": 2}))
    with pytest.raises(EngineError, match="skip_tokenizer_init"):
        plan(config(extra_engine_args={"skip_tokenizer_init": True}))
    assert plan(config(extra_engine_args={"tensor_parallel_size": 2})).world_size == 2


@pytest.mark.parametrize(
    ("fields", "message"), flag_mistakes(unknown="takes no", context_field="max_seq_len")
)
def test_flag_mistakes_are_refused_in_one_line(fields, message) -> None:
    with pytest.raises(EngineError, match=message):
        plan(config(**fields))


def test_gguf_files_are_refused() -> None:
    with pytest.raises(EngineError, match="cannot load GGUF"):
        plan(EngineConfig(model_name="m", model_path="/models/m.Q4_1.gguf"))


def test_several_nodes_need_the_mpi_launcher() -> None:
    cfg = config(tensor_parallel_size=16, num_nodes=2)
    with pytest.raises(EngineError, match="trtllm-llmapi-launch") as e:
        plan(cfg)
    assert launch_command(cfg, 16) in str(e.value)
    launched = {LAUNCHED_BY_MPI: "1", "tllm_mpi_size": "16"}
    p = plan(cfg, environ=launched)
    assert p.kwargs["gpus_per_node"] == 8 and p.world_size == 16
    with pytest.raises(EngineError, match="MPI started 8 ranks"):
        plan(cfg, environ={LAUNCHED_BY_MPI: "1", "tllm_mpi_size": "8"})
    with pytest.raises(EngineError, match="not a multiple"):
        check_mpi(config(tensor_parallel_size=3, num_nodes=2), 3, launched)
