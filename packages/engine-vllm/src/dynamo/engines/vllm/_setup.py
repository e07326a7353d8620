"""From `dynamo-run`'s flags to a vLLM `VllmConfig`: the start-up steps before an `AsyncLLM`.

The embedding engine (`_embedding.py`) runs these steps, with its own fixed arguments
(`runner="pooling"`); the generating engine does the same steps inline in `VllmEngine.start`,
with its KV-event configuration added between the two.

1. `engine_arguments`: the model (an HF folder or repo id; GGUF refused where vLLM cannot read
   it), the `AsyncEngineArgs` keyword arguments from the flags and `--extra-engine-args`
   (checked against the installed vLLM's fields), the devices the engine sees, and the
   environment vLLM reads at start.
2. `vllm_config`: vLLM's own validation of those arguments, off the event loop; what it refuses
   is one line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from dynamo.engines.vllm._args import DEFAULTS, engine_kwargs, flag_kwargs, set_visible_devices
from dynamo.engines.vllm._engine import _one_line, can_load_gguf, set_flags
from dynamo.llm import EngineConfig, EngineError


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
        raise EngineError(f"vLLM refused the engine arguments: {_one_line(e)}") from None


__all__ = ["engine_arguments", "vllm_config"]
