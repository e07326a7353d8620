"""`dynamo-run`'s flags as TensorRT-LLM `LLM(...)` keyword arguments (the PyTorch backend).

Plain values in and out: nothing here imports TensorRT-LLM, so every mapping is unit-tested
without it (the argument names `LLM` takes are passed in as `known`; the engine reads them from
`TorchLlmArgs`).

| flag | LLM argument |
|---|---|
| MODEL (an HF folder or repo id) | `model` |
| `--model-config` | `tokenizer` |
| `--context-length` | `max_seq_len` |
| `--kv-cache-block-size` | `kv_cache_config.tokens_per_block` (also the block size of KV events) |
| `--tensor-parallel-size` (the total over all nodes) | `tensor_parallel_size` |
| `--num-nodes` | `gpus_per_node` = world size / nodes, under MPI (below) |
| `--base-gpu-id` | `CUDA_VISIBLE_DEVICES` (`dynamo.llm.devices`), set before TensorRT-LLM starts |

`--extra-engine-args` (JSON, or a YAML file as upstream's `out=trtllm` took) sets any other `LLM`
argument (`pipeline_parallel_size`, `guided_decoding_backend`, `kv_cache_config: {...}`, ...); an
unknown name is an error, and so is a value that contradicts a flag. Block reuse (the prefix
cache) is on, as KV-aware routing needs; a distributed worker also turns on KV cache events
(`event_buffer_max_size`) and per-iteration statistics (`enable_iter_perf_stats`).

Multi-node is TensorRT-LLM's MPI launch, as upstream Dynamo runs it: `mpirun` (or `srun`) starts
`trtllm-llmapi-launch dynamo-run ...` on every node; rank 0 runs `dynamo-run`, the other ranks
TensorRT-LLM's MPI workers. `--node-rank` and `--leader-addr` have no meaning there (MPI assigns
ranks), so `out=trtllm` does not accept them.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dynamo.llm.engine import DEFAULT_KV_CACHE_BLOCK_SIZE, EngineConfig
from dynamo.llm.errors import EngineError

#: `EngineConfig` as `dynamo-run` fills it when no flag is given.
_DEFAULTS = EngineConfig(model_name="")
#: KV cache events kept by TensorRT-LLM between two polls (upstream Dynamo's value).
EVENT_BUFFER_MAX_SIZE = 100_000
#: Set by `trtllm-llmapi-launch` for the command it runs on MPI rank 0.
LAUNCHED_BY_MPI = "TLLM_SPAWN_PROXY_PROCESS"
#: The MPI world size `trtllm-llmapi-launch` found.
MPI_WORLD_SIZE = "tllm_mpi_size"


@dataclass(frozen=True, slots=True)
class LlmPlan:
    """What `tensorrt_llm.LLM` is started with (`kv_cache_config` as a plain dict: the engine
    turns it into a `KvCacheConfig`)."""

    kwargs: dict[str, Any]
    block_size: int
    world_size: int
    publishes_events: bool
    guided_decoding: bool


def launch_command(config: EngineConfig, world_size: int) -> str:
    """How to start `dynamo-run out=trtllm` on several nodes (Open MPI spelling)."""
    per_node = max(1, world_size // max(1, config.num_nodes))
    return (
        f"mpirun -n {world_size} -H node0:{per_node},node1:{per_node},... "
        f"trtllm-llmapi-launch dynamo-run in=dyn://NS.COMP.EP out=trtllm "
        f"{shlex.quote(str(config.model_path))} --tensor-parallel-size "
        f"{config.tensor_parallel_size} --num-nodes {config.num_nodes}"
    )


def check_mpi(config: EngineConfig, world_size: int, environ: Mapping[str, str]) -> None:
    """Several nodes need TensorRT-LLM's MPI launcher around `dynamo-run`."""
    if config.num_nodes < 1:
        raise EngineError(f"--num-nodes must be at least 1, got {config.num_nodes}")
    if config.num_nodes == 1:
        return
    if world_size % config.num_nodes:
        raise EngineError(
            f"the GPU count over all nodes (tensor x pipeline parallel = {world_size}) is not a "
            f"multiple of --num-nodes {config.num_nodes}"
        )
    if environ.get(LAUNCHED_BY_MPI) != "1":
        raise EngineError(
            "out=trtllm on several nodes runs under TensorRT-LLM's MPI launcher: "
            + launch_command(config, world_size)
        )
    mpi_size = environ.get(MPI_WORLD_SIZE)
    if mpi_size and mpi_size.isdigit() and int(mpi_size) != world_size:
        raise EngineError(
            f"MPI started {mpi_size} ranks but the engine needs {world_size} "
            "(--tensor-parallel-size x pipeline_parallel_size)"
        )


def _merge_kv_cache_config(
    user: Mapping[str, Any] | None, config: EngineConfig, distributed: bool
) -> dict[str, Any]:
    kv = dict(user or {})
    flag_set = config.kv_cache_block_size is not None  # given (16 too)
    if (
        "tokens_per_block" in kv
        and flag_set
        and kv["tokens_per_block"] != config.kv_cache_block_size
    ):
        raise EngineError(
            f"--extra-engine-args: kv_cache_config.tokens_per_block {kv['tokens_per_block']} "
            f"disagrees with --kv-cache-block-size {config.kv_cache_block_size}"
        )
    kv.setdefault(
        "tokens_per_block",
        DEFAULT_KV_CACHE_BLOCK_SIZE
        if config.kv_cache_block_size is None
        else config.kv_cache_block_size,
    )
    if kv.get("enable_block_reuse") is False and distributed:
        raise EngineError(
            "KV-aware routing needs TensorRT-LLM's block reuse: drop "
            "kv_cache_config.enable_block_reuse=false from --extra-engine-args"
        )
    kv.setdefault("enable_block_reuse", True)
    if distributed and not kv.get("event_buffer_max_size"):
        kv["event_buffer_max_size"] = EVENT_BUFFER_MAX_SIZE
    return kv


def plan_llm_args(
    config: EngineConfig,
    known: frozenset[str],
    *,
    distributed: bool,
    environ: Mapping[str, str],
) -> LlmPlan:
    """The `LLM(**kwargs)` arguments for `config`; `distributed`: a worker behind `in=dyn://`
    (it publishes KV events and load)."""
    model = str(config.model_path or "")
    if model.endswith(".gguf"):
        raise EngineError(
            "out=trtllm cannot load GGUF files; pass an HF folder or repo id "
            "(safetensors), e.g. the model the GGUF was made from"
        )
    extra = dict(config.extra_engine_args or {})
    unknown = sorted(set(extra) - known)
    if unknown:
        raise EngineError(
            f"--extra-engine-args: TensorRT-LLM's LLM takes no {', '.join(unknown)} "
            "(see tensorrt_llm.llmapi.TorchLlmArgs)"
        )
    if extra.get("backend", "pytorch") != "pytorch":
        raise EngineError("out=trtllm runs TensorRT-LLM's PyTorch backend only (backend: pytorch)")
    flags: dict[str, Any] = {
        "model": model,
        "tensor_parallel_size": config.tensor_parallel_size,
    }
    if config.model_config:
        flags["tokenizer"] = config.model_config
    if config.context_length is not None:
        flags["max_seq_len"] = config.context_length
    for name, value in flags.items():
        if name in extra and extra[name] != value and name != "tensor_parallel_size":
            raise EngineError(
                f"--extra-engine-args: {name}={extra[name]!r} disagrees with the command "
                f"line's {value!r}; set it in one place"
            )
    if (
        "tensor_parallel_size" in extra
        and config.tensor_parallel_size != _DEFAULTS.tensor_parallel_size
        and extra["tensor_parallel_size"] != config.tensor_parallel_size
    ):
        raise EngineError(
            f"--extra-engine-args: tensor_parallel_size {extra['tensor_parallel_size']} "
            f"disagrees with --tensor-parallel-size {config.tensor_parallel_size}"
        )
    if extra.get("skip_tokenizer_init"):
        raise EngineError(
            "--extra-engine-args: skip_tokenizer_init must stay false (TensorRT-LLM takes the "
            "end-of-sequence id from the tokenizer)"
        )
    kv = _merge_kv_cache_config(extra.pop("kv_cache_config", None), config, distributed)
    kwargs = {**flags, **extra, "kv_cache_config": kv}
    if distributed:
        kwargs.setdefault("enable_iter_perf_stats", True)
    world = int(kwargs["tensor_parallel_size"]) * int(kwargs.get("pipeline_parallel_size") or 1)
    check_mpi(config, world, environ)
    if config.num_nodes > 1:
        kwargs.setdefault("gpus_per_node", world // config.num_nodes)
    return LlmPlan(
        kwargs=kwargs,
        block_size=int(kv["tokens_per_block"]),
        world_size=world,
        publishes_events=distributed,
        guided_decoding=kwargs.get("guided_decoding_backend") is not None,
    )


__all__ = [
    "EVENT_BUFFER_MAX_SIZE",
    "LAUNCHED_BY_MPI",
    "LlmPlan",
    "check_mpi",
    "launch_command",
    "plan_llm_args",
]
