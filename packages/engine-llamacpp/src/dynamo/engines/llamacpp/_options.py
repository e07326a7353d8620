"""The engine's settings, from `--context-length` and `--extra-engine-args`.

Our own options: `n_parallel` (sequences decoded together, each in its own slot; by default
from the machine, `parallel_for_memory`), `n_ctx` (each slot's context: the card's context length), `prefix_cache` (reuse a finished request's KV cells
for a later prompt that starts the same way; off by default, see the README) and `verbose`
(llama.cpp's own log lines). Every other key must be a scalar field of llama.cpp's
`llama_model_params` or `llama_context_params` (`n_threads`, `n_batch`, `n_gpu_layers`,
`flash_attn_type`, `type_k`, ...), passed to llama.cpp as given; anything else is an error, and so
is a value of the wrong type.
"""

from __future__ import annotations

import ctypes
import math
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from dynamo.llm.engine import EngineConfig
from dynamo.llm.errors import EngineError

#: Upper bound on the default context: the KV cache for a 128k-context model does not fit a laptop.
DEFAULT_MAX_CONTEXT = 8192
#: Most slots by default: llama-server's default (`--parallel` auto). On a CPU, batching 4
#: sequences costs little more than decoding one; more slots add KV cache memory (n_parallel x
#: n_ctx cells), so a machine with less memory gets fewer (`parallel_for_memory`).
DEFAULT_PARALLEL = 4
#: Bytes per element of the KV cache's ggml types (`type_k` / `type_v`), f16 by default.
#: ggml's type ids (`enum ggml_type`); a quantized block of 32 values takes its bytes over 32.
_GGML_TYPE_BYTES = {
    0: 4.0,  # f32
    1: 2.0,  # f16
    30: 2.0,  # bf16
    8: 34 / 32,  # q8_0
    2: 18 / 32,  # q4_0
    3: 20 / 32,  # q4_1
    6: 22 / 32,  # q5_0
    7: 24 / 32,  # q5_1
}
#: Default most tokens in one decode step (prompt chunks plus one token per running sequence).
DEFAULT_BATCH = 512
#: Our own options, beside llama.cpp's struct fields.
OWN_OPTIONS = frozenset({"n_ctx", "n_parallel", "prefix_cache", "verbose"})
#: Struct fields the engine sets itself.
_OWNED_FIELDS = frozenset(
    {"n_ctx", "n_seq_max", "kv_unified", "vocab_only", "embeddings", "no_alloc", "n_samplers"}
)


@cache
def _struct_fields() -> dict[str, tuple[str, Any]]:
    """Settable scalar fields of llama.cpp's model and context parameter structs:
    name -> (which struct, ctypes type)."""
    import llama_cpp

    found: dict[str, tuple[str, Any]] = {}
    for struct, cls in (
        ("model", llama_cpp.llama_model_params),
        ("context", llama_cpp.llama_context_params),
    ):
        for name, ctype, *_ in cls._fields_:
            code = getattr(ctype, "_type_", None)
            if isinstance(code, str) and code in "?bBhHiIlLqQfd" and name not in _OWNED_FIELDS:
                found[name] = (struct, ctype)
    return found


def _checked(name: str, value: Any, ctype: Any) -> Any:
    code: str = ctype._type_
    if code == "?":
        if not isinstance(value, bool):
            raise EngineError(f"--extra-engine-args: {name} must be true or false, got {value!r}")
        return value
    if code in "fd":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EngineError(f"--extra-engine-args: {name} must be a number, got {value!r}")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise EngineError(f"--extra-engine-args: {name} must be an integer, got {value!r}")
    bits = 8 * ctypes.sizeof(ctype)
    low, high = (0, 2**bits - 1) if code.isupper() else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if not low <= value <= high:
        raise EngineError(f"--extra-engine-args: {name} is out of range: {value}")
    return value


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EngineError(f"{name} must be a positive integer, got {value!r}")
    return value


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
    (llama.cpp then picks)."""
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


def available_memory(
    meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """Bytes this process can still take: the kernel's `MemAvailable`, capped by what is left
    under its cgroup v2 memory limit. None where neither is readable (not Linux)."""
    found: list[int] = []
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            used = int((cgroup / "memory.current").read_text().strip())
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def kv_bytes_per_token(
    n_layer: int, n_embd: int, n_head: int, n_head_kv: int, type_k: int = 1, type_v: int = 1
) -> int:
    """KV cache bytes one token takes in one sequence: a key and a value row per layer, each
    `n_head_kv` heads of `n_embd / n_head` elements (what llama.cpp allocates; a sliding-window
    model takes less)."""
    row = n_head_kv * (n_embd // max(1, n_head))
    per_element = _GGML_TYPE_BYTES.get(type_k, 2.0) + _GGML_TYPE_BYTES.get(type_v, 2.0)
    return math.ceil(n_layer * row * per_element)


def parallel_for_memory(slot_bytes: int, model_bytes: int, available: int | None) -> int:
    """The default `n_parallel`: `DEFAULT_PARALLEL` slots, or fewer where their KV cache
    (`slot_bytes` each: n_ctx tokens) would take more than half of the memory left once the
    model is in (the other half stays for llama.cpp's compute buffers, the frontend and the
    rest of the machine). At least 1; `DEFAULT_PARALLEL` where the memory is unknown."""
    if available is None or slot_bytes <= 0:
        return DEFAULT_PARALLEL
    budget = max(0, available - model_bytes) // 2
    return max(1, min(DEFAULT_PARALLEL, budget // slot_bytes))


@dataclass(frozen=True)
class EngineSettings:
    """What the engine was asked for, validated."""

    #: Each slot's context (prompt plus output), in tokens.
    n_ctx: int
    #: Sequences decoded together: one slot (and one KV stream) each; None: from the machine,
    #: once the model's KV size is known (`parallel_for_memory`).
    n_parallel: int | None
    #: Most tokens in one decode step.
    n_batch: int
    prefix_cache: bool = False
    verbose: bool = False
    #: llama.cpp struct fields, by struct ("model" or "context").
    model_params: dict[str, Any] = field(default_factory=dict)
    context_params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: EngineConfig, model_context: int | None) -> EngineSettings:
        """Validate `config`; an `EngineError` names the first option that cannot be honoured."""
        extra = dict(config.extra_engine_args)
        known = _struct_fields()
        unknown = sorted(set(extra) - known.keys() - OWN_OPTIONS)
        if unknown:
            raise EngineError(
                f"--extra-engine-args: out=llamacpp does not take {', '.join(unknown)}; it takes "
                f"{', '.join(sorted(OWN_OPTIONS))} and the scalar fields of llama.cpp's "
                f"llama_model_params and llama_context_params (n_threads, n_batch, n_gpu_layers, "
                f"flash_attn_type, type_k, ...)"
            )
        params: dict[str, dict[str, Any]] = {"model": {}, "context": {}}
        threads = default_threads()
        if threads:
            params["context"].update(n_threads=threads, n_threads_batch=threads)
        for name, value in extra.items():
            if name in known:
                struct, ctype = known[name]
                params[struct][name] = _checked(name, value, ctype)
        if "n_ctx" in extra and config.context_length and extra["n_ctx"] != config.context_length:
            raise EngineError(
                f"--extra-engine-args n_ctx {extra['n_ctx']} disagrees with "
                f"--context-length {config.context_length}"
            )
        if "n_ctx" in extra:
            n_ctx = _positive_int("--extra-engine-args n_ctx", extra["n_ctx"])
        elif config.context_length is not None:
            n_ctx = _positive_int("--context-length", config.context_length)
        else:
            n_ctx = min(model_context or DEFAULT_MAX_CONTEXT, DEFAULT_MAX_CONTEXT)
        n_parallel = (
            _positive_int("--extra-engine-args n_parallel", extra["n_parallel"])
            if "n_parallel" in extra
            else None
        )
        n_batch = params["context"].setdefault("n_batch", DEFAULT_BATCH)
        if n_batch < (n_parallel or 1):
            raise EngineError(
                f"--extra-engine-args: n_batch ({n_batch}) must be at least n_parallel "
                f"({n_parallel or 1}): every running sequence needs a place in each decode step"
            )
        for flag in ("prefix_cache", "verbose"):
            if not isinstance(extra.get(flag, False), bool):
                raise EngineError(f"--extra-engine-args: {flag} must be true or false")
        return cls(
            n_ctx=n_ctx,
            n_parallel=n_parallel,
            n_batch=n_batch,
            prefix_cache=extra.get("prefix_cache", False),
            verbose=extra.get("verbose", False),
            model_params=params["model"],
            context_params=params["context"],
        )
