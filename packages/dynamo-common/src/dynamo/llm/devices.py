"""`--base-gpu-id`: which GPUs a library engine (vLLM, TensorRT-LLM) sees.

These engines number their ranks over the *visible* CUDA devices, so `--base-gpu-id N` becomes
`CUDA_VISIBLE_DEVICES`, set before the library initialises CUDA. When the variable is already
set (a scheduler gave the process some devices), N indexes into that list instead of naming
device ordinals. (SGLang has its own `base_gpu_id` and needs none of this.)
"""

from __future__ import annotations

import os

from dynamo.llm.errors import EngineError


def visible_devices(base_gpu_id: int, count: int, current: str | None) -> str:
    """`CUDA_VISIBLE_DEVICES` for `count` devices from `base_gpu_id` on: indexes into the
    devices already visible (`current`) when that is set, else device ordinals."""
    if base_gpu_id < 0 or count < 1:
        raise EngineError(f"--base-gpu-id must be >= 0, got {base_gpu_id}")
    pool = [d.strip() for d in current.split(",") if d.strip()] if current else None
    if pool is None:
        return ",".join(str(base_gpu_id + i) for i in range(count))
    if base_gpu_id + count > len(pool):
        raise EngineError(
            f"--base-gpu-id {base_gpu_id} with {count} device(s) needs "
            f"{base_gpu_id + count} visible devices; CUDA_VISIBLE_DEVICES has {len(pool)}"
        )
    return ",".join(pool[base_gpu_id : base_gpu_id + count])


def set_visible_devices(
    base_gpu_id: int, count: int, environ: dict[str, str] | None = None
) -> None:
    """Point `CUDA_VISIBLE_DEVICES` at this engine's devices (no-op for `--base-gpu-id 0` with
    nothing set: the library then takes the first devices anyway)."""
    env = os.environ if environ is None else environ
    current = env.get("CUDA_VISIBLE_DEVICES")
    if base_gpu_id == 0 and current is None:
        return
    env["CUDA_VISIBLE_DEVICES"] = visible_devices(base_gpu_id, count, current)


__all__ = ["set_visible_devices", "visible_devices"]
