"""`dynamo-run`'s flags and `--extra-engine-args` as vLLM `AsyncEngineArgs` keyword arguments.

Plain values in, plain values out: nothing here imports vLLM, so every mapping is unit-tested
without it. The engine passes in the field names of the installed vLLM's `AsyncEngineArgs`.

- `--context-length` is `max_model_len`, `--kv-cache-block-size` is `block_size`,
  `--tensor-parallel-size` is `tensor_parallel_size` (with Ray, the whole cluster's GPUs);
- `--num-nodes`/`--node-rank`/`--leader-addr HOST:PORT` are vLLM's own multi-node options
  (`nnodes`, `node_rank`, `master_addr`, `master_port`, vLLM >= 0.11). Dynamo runs the leader
  (rank 0); the other nodes run vLLM's headless workers (`follower_command`);
- `--base-gpu-id` picks the devices the engine sees (`visible_devices`), through
  `CUDA_VISIBLE_DEVICES`, before vLLM initialises;
- `--extra-engine-args` may set any other `AsyncEngineArgs` field; an unknown key, or one that
  repeats a flag given on the command line, is an error naming it.

Defaults that differ from vLLM's, as upstream Dynamo's worker sets them: prefix caching on
(KV-aware routing needs its block events), and statistics on (the load metrics come from them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dynamo.llm import EngineError
from dynamo.llm.devices import set_visible_devices, visible_devices

#: Fields the engine sets itself; `--extra-engine-args` may not name them.
OWNED_FIELDS = frozenset({"model", "kv_events_config"})
#: `dynamo-run` flag (EngineConfig field) → the AsyncEngineArgs field(s) it sets.
FLAG_FIELDS: Mapping[str, tuple[str, ...]] = {
    "context_length": ("max_model_len",),
    "kv_cache_block_size": ("block_size",),
    "tensor_parallel_size": ("tensor_parallel_size",),
    "num_nodes": ("nnodes",),
    "node_rank": ("node_rank",),
    "leader_addr": ("master_addr", "master_port"),
    "model_config": ("tokenizer",),
}
DEFAULTS: Mapping[str, Any] = {"enable_prefix_caching": True, "disable_log_stats": False}


def split_host_port(addr: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets) as a pair; an error naming --leader-addr otherwise."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EngineError(f"--leader-addr must be HOST:PORT, got '{addr}'")
    return host.strip("[]"), int(port)


def flag_kwargs(
    *,
    context_length: int | None,
    kv_cache_block_size: int | None,
    tensor_parallel_size: int,
    num_nodes: int,
    node_rank: int,
    leader_addr: str | None,
    model_config: str | None,
) -> dict[str, Any]:
    """The AsyncEngineArgs keyword arguments `dynamo-run`'s flags set."""
    out: dict[str, Any] = {"tensor_parallel_size": tensor_parallel_size}
    if context_length is not None:
        out["max_model_len"] = context_length
    if kv_cache_block_size is not None:
        out["block_size"] = kv_cache_block_size
    if model_config is not None:
        out["tokenizer"] = model_config
    if num_nodes > 1:
        if leader_addr is None:
            raise EngineError("--num-nodes > 1 needs --leader-addr HOST:PORT (the rank 0 node)")
        if not 0 <= node_rank < num_nodes:
            raise EngineError(f"--node-rank must be in [0, {num_nodes}), got {node_rank}")
        host, port = split_host_port(leader_addr)
        out |= {"nnodes": num_nodes, "node_rank": node_rank, "master_addr": host}
        out["master_port"] = port
    elif node_rank or leader_addr:
        raise EngineError("--node-rank and --leader-addr need --num-nodes > 1")
    return out


def engine_kwargs(
    model: str,
    flags: Mapping[str, Any],
    set_flags: Iterable[str],
    extra: Mapping[str, Any],
    fields: Iterable[str],
    defaults: Mapping[str, Any] = DEFAULTS,
) -> dict[str, Any]:
    """AsyncEngineArgs keyword arguments: our defaults, then the flags, then `extra`.

    `set_flags` are the EngineConfig fields the user gave on the command line; `fields` the
    installed vLLM's AsyncEngineArgs field names; `defaults` the generating engine's unless an
    engine has its own (the embedding engine keeps vLLM's).
    """
    known = frozenset(fields)
    unknown = sorted(set(extra) - known)
    if unknown:
        raise EngineError(
            f"--extra-engine-args: vLLM's AsyncEngineArgs has no field {', '.join(unknown)}"
        )
    owned = sorted(set(extra) & OWNED_FIELDS)
    if owned:
        raise EngineError(f"--extra-engine-args: {', '.join(owned)} is set by dynamo-run")
    for flag in set_flags:
        clash = sorted(set(FLAG_FIELDS.get(flag, ())) & set(extra))
        if clash:
            option = "--" + flag.replace("_", "-")
            raise EngineError(
                f"--extra-engine-args sets {', '.join(clash)}, which {option} also sets: "
                "give one of them"
            )
    missing = sorted(set(flags) - known)
    if missing:
        raise EngineError(
            f"the installed vLLM has no {', '.join(missing)}: upgrade vLLM for these flags"
        )
    ours = {k: v for k, v in defaults.items() if k in known}
    return {**ours, **flags, **extra, "model": model}


def follower_command(model: str, kwargs: Mapping[str, Any]) -> str:
    """The command that runs a multi-node follower (rank > 0): vLLM's own headless workers."""
    parts = ["vllm", "serve", model, "--headless"]
    for key in (
        "tensor_parallel_size", "nnodes", "node_rank", "master_addr", "master_port",
        "max_model_len", "block_size",
    ):  # fmt: skip
        if key in kwargs:
            parts += ["--" + key.replace("_", "-"), str(kwargs[key])]
    return " ".join(parts)


__all__ = [
    "DEFAULTS",
    "FLAG_FIELDS",
    "OWNED_FIELDS",
    "engine_kwargs",
    "flag_kwargs",
    "follower_command",
    "set_visible_devices",
    "split_host_port",
    "visible_devices",
]
