"""From `dynamo-run`'s flags to a vLLM `VllmConfig`: the start-up steps before an `AsyncLLM`,
which both engines take: `VllmEngine` (adding its KV-event configuration between the two steps)
and `VllmEmbeddingEngine` (with its own fixed arguments, `runner="pooling"`). Also the helpers
both use: importing vLLM with a one-line error, and errors as one line.

1. `engine_arguments`: the model (an HF folder or repo id; GGUF refused where vLLM cannot read
   it), the `AsyncEngineArgs` keyword arguments from the flags and `--extra-engine-args`
   (checked against the installed vLLM's fields; `--node-rank` > 0 refused with the command
   that runs that node), the devices the engine sees, and the environment vLLM reads at start.
2. `vllm_config`: vLLM's own validation of those arguments, off the event loop; what it refuses
   is one line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import os
from collections.abc import Mapping
from typing import Any

from dynamo.engines.vllm._args import (
    DEFAULTS,
    engine_kwargs,
    flag_kwargs,
    follower_command,
    set_visible_devices,
)
from dynamo.llm import EngineConfig, EngineError

INSTALL_HINT = (
    "out=vllm needs vLLM: `pip install vllm` on a GPU machine, or the CPU build "
    "(see the dynamo-engine-vllm README)"
)
# EngineConfig's own defaults: a flag at its default was not given on the command line.
_DEFAULT_CONFIG = EngineConfig(model_name="")


def import_vllm() -> Any:
    """The `vllm` module, or the one-line error that says how to install it."""
    # vLLM logs its Triton probing at import; on a CPU that is noise before any error line.
    logging.getLogger("vllm.triton_utils.importing").setLevel(logging.ERROR)
    try:
        import vllm
    except ImportError as e:
        raise EngineError(f"{INSTALL_HINT} ({e})") from None
    return vllm


#: What `start` uses of vLLM beyond `vllm` itself; imported with it, off the event loop.
_ENGINE_MODULES = (
    "vllm.config",
    "vllm.engine.arg_utils",
    "vllm.usage.usage_lib",
    "vllm.v1.engine.async_llm",
)


async def import_vllm_off_loop() -> Any:
    """`import_vllm`, and the vLLM modules `start` takes its classes from, in a worker thread.

    Importing vLLM takes 12-80 s here (torch and vLLM's engine modules). On the event loop it
    stalled a distributed worker's etcd lease keeper past the lease's TTL (10 s): the lease
    expired and was replaced while the engine started. In a thread the loop keeps running
    (vLLM's imports register no signal handlers, and its `AsyncLLM` is built in a thread too);
    the `from vllm... import` lines in `start` then find the modules loaded.
    """

    def load() -> Any:
        vllm = import_vllm()
        for name in _ENGINE_MODULES:
            importlib.import_module(name)
        return vllm

    return await asyncio.to_thread(load)


def one_line(e: BaseException) -> str:
    """An exception as one line of at most 400 characters, for a user."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def can_load_gguf() -> bool:
    """Whether the installed vLLM reads GGUF files: its in-tree loader (vLLM <= 0.2x) or the
    `vllm-gguf-plugin` it moved to."""
    import importlib.util

    return any(
        importlib.util.find_spec(name) is not None
        for name in ("vllm.model_executor.model_loader.gguf_loader", "vllm_gguf_plugin")
    )


def set_flags(config: EngineConfig) -> list[str]:
    """The EngineConfig fields the user changed from their defaults (the flags given)."""
    names = ("context_length", "kv_cache_block_size", "tensor_parallel_size", "num_nodes",
             "node_rank", "leader_addr", "model_config")  # fmt: skip
    return [n for n in names if getattr(config, n) != getattr(_DEFAULT_CONFIG, n)]


def engine_arguments(
    config: EngineConfig,
    vllm: Any,
    *,
    fixed: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """(the model, `AsyncEngineArgs` keyword arguments). `fixed`: arguments the engine sets and
    `--extra-engine-args` may not change; `defaults`: ones it may, in place of the generating
    engine's (prefix caching and statistics, for KV routing; None keeps those)."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    fixed = dict(fixed or {})
    model = config.model_path or config.model_name
    if model.endswith(".gguf") and not can_load_gguf():
        raise EngineError(
            f"vLLM {vllm.__version__} cannot load GGUF files (its GGUF loader moved to the "
            "vllm-gguf-plugin package): pass an HF folder or repo id, or use out=llamacpp"
        )
    clash = sorted(set(config.extra_engine_args) & set(fixed))
    if clash:
        raise EngineError(
            f"--extra-engine-args: {', '.join(clash)} is set by this engine "
            f"({', '.join(f'{k}={v!r}' for k, v in fixed.items() if k in clash)})"
        )
    flags = flag_kwargs(
        context_length=config.context_length,
        kv_cache_block_size=config.kv_cache_block_size,
        tensor_parallel_size=config.tensor_parallel_size,
        num_nodes=config.num_nodes,
        node_rank=config.node_rank,
        leader_addr=config.leader_addr,
        model_config=config.model_config,
    )
    fields = [f.name for f in dataclasses.fields(AsyncEngineArgs)]
    kwargs = engine_kwargs(
        model,
        flags,
        set_flags(config),
        config.extra_engine_args,
        fields,
        DEFAULTS if defaults is None else defaults,
    )
    if config.node_rank > 0:
        raise EngineError(
            f"--node-rank {config.node_rank}: dynamo-run runs the leader (rank 0) only; "
            f"start this node's vLLM workers with `{follower_command(model, kwargs)}`"
        )
    missing = sorted(set(fixed) - set(fields))
    if missing:
        raise EngineError(f"the installed vLLM has no {', '.join(missing)}: upgrade vLLM")
    kwargs |= fixed
    set_visible_devices(
        config.base_gpu_id,
        config.tensor_parallel_size * int(kwargs.get("pipeline_parallel_size") or 1),
    )
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    # vLLM's engine core runs in a spawned process; spawn is what vLLM forces on CPU anyway.
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    return model, kwargs


async def vllm_config(kwargs: Mapping[str, Any]) -> Any:
    """vLLM's `VllmConfig` for these `AsyncEngineArgs`, or an `EngineError` saying what vLLM
    refused."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext

    try:
        engine_args = AsyncEngineArgs(**kwargs)
        return await asyncio.to_thread(
            engine_args.create_engine_config, UsageContext.OPENAI_API_SERVER
        )
    except (TypeError, ValueError) as e:
        raise EngineError(f"vLLM refused the engine arguments: {one_line(e)}") from None


__all__ = [
    "INSTALL_HINT",
    "can_load_gguf",
    "engine_arguments",
    "import_vllm",
    "import_vllm_off_loop",
    "one_line",
    "set_flags",
    "vllm_config",
]
