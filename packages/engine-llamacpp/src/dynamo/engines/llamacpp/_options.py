"""Mapping Dynamo's options onto llama-cpp-python's: model construction and per-request sampling."""

from __future__ import annotations

import inspect
import math
import os
from functools import cache
from pathlib import Path
from typing import Any

from dynamo.llm.engine import EngineConfig
from dynamo.llm.errors import EngineError

# Upper bound on the default context: the KV cache for a 128k-context model does not fit a laptop.
DEFAULT_MAX_CONTEXT = 8192
# Arguments we set ourselves; the user may not override them through --extra-engine-args.
_OWNED = {"self", "model_path", "kwargs", "vocab_only"}


@cache
def _llama_parameters() -> frozenset[str]:
    from llama_cpp import Llama

    return frozenset(inspect.signature(Llama.__init__).parameters) - _OWNED


def _cgroup_cpus(cpu_max: Path) -> int | None:
    """CPUs allowed by a cgroup v2 quota (`cpu.max` is "QUOTA PERIOD" or "max PERIOD")."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def default_threads(
    sys_cpu: Path = Path("/sys/devices/system/cpu"),
    cpu_max: Path = Path("/sys/fs/cgroup/cpu.max"),
) -> int | None:
    """Physical cores this process may use, capped by its cgroup CPU quota: llama.cpp's own
    default. llama-cpp-python's default (half the logical CPUs, assuming hyper-threading) leaves
    half of a VM's cores idle, which halves decoding speed. None where the topology is unreadable
    (llama-cpp-python then picks)."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return None
    cores = set()
    for cpu in cpus:
        topology = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return None
        cores.add((package, core))
    if not cores:
        return None
    quota = _cgroup_cpus(cpu_max)
    return min(len(cores), quota) if quota else len(cores)


def llama_kwargs(config: EngineConfig, model_context: int | None) -> dict[str, Any]:
    """`llama_cpp.Llama(...)` keyword arguments for this engine config."""
    extra = dict(config.extra_engine_args)
    unknown = sorted(set(extra) - _llama_parameters())
    if unknown:
        raise EngineError(
            f"--extra-engine-args: llama_cpp.Llama does not take {', '.join(unknown)} "
            f"(see help(llama_cpp.Llama))"
        )
    n_ctx = config.context_length or min(model_context or DEFAULT_MAX_CONTEXT, DEFAULT_MAX_CONTEXT)
    threads = default_threads()
    defaults: dict[str, Any] = {"n_ctx": n_ctx, "verbose": False}
    if threads:
        defaults["n_threads"] = threads
    return {**defaults, **extra}


def sampling_kwargs(sampling: dict[str, Any]) -> dict[str, Any]:
    """`Llama.generate(...)` sampling arguments from a PreprocessedRequest's `sampling_options`.

    Unset options take OpenAI's defaults (temperature 1, top_p 1, no top_k, no min_p), not
    llama-cpp-python's own (0.8, 0.95, 40, 0.05), so that a request means the same on every engine.
    """

    def get(name: str, default: Any) -> Any:
        value = sampling.get(name)
        return default if value is None else value

    top_k = get("top_k", 0)
    return {
        "temp": float(get("temperature", 1.0)),
        "top_p": float(get("top_p", 1.0)),
        "top_k": 0 if top_k is None or top_k < 0 else int(top_k),
        "min_p": float(get("min_p", 0.0)),
        "repeat_penalty": float(get("repetition_penalty", 1.0)),
        "presence_penalty": float(get("presence_penalty", 0.0)),
        "frequency_penalty": float(get("frequency_penalty", 0.0)),
    }
