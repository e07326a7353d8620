"""`dynamo-run`'s flags as SGLang `ServerArgs` keyword arguments (`sglang.Engine(**kwargs)`).

Plain values in and out: nothing here imports SGLang, so every mapping is unit-tested without it
(the names `ServerArgs` knows are passed in as `known`; the engine reads them from SGLang).

| flag | ServerArgs |
|---|---|
| MODEL (an HF folder, repo id or GGUF file) | `model_path` |
| `--model-config` (tokenizer folder for a GGUF file) | `tokenizer_path` |
| `--model-name` | `served_model_name` |
| `--context-length` | `context_length` |
| `--kv-cache-block-size` | `page_size` (also the block size KV events are hashed with) |
| `--tensor-parallel-size` (the total over all nodes) | `tp_size` |
| `--base-gpu-id` | `base_gpu_id` |
| `--num-nodes`, `--node-rank`, `--leader-addr` | `nnodes`, `node_rank`, `dist_init_addr` |

Multi-node, as upstream `dynamo-run` did it: Dynamo runs the leader (node rank 0) with
`--leader-addr` as SGLang's `--dist-init-addr`; every other node runs SGLang's own launcher
(`python -m sglang.launch_server ... --node-rank N`), which `follower_command` spells out.

`--extra-engine-args` takes any other `ServerArgs` field (`dp_size`, `mem_fraction_static`,
`trust_remote_code`, ...); an unknown name is an error, and so is a field a flag above already
sets to something else. Two fields are ours: `incremental_streaming_output` (our deltas are the
new tokens only) and `skip_tokenizer_init` (SGLang keeps its tokenizer for `min_new_tokens`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dynamo.llm.engine import DEFAULT_KV_CACHE_BLOCK_SIZE, EngineConfig
from dynamo.llm.errors import EngineError

#: `EngineConfig` as `dynamo-run` fills it when no flag is given.
_DEFAULTS = EngineConfig(model_name="")
#: Fields we set ourselves, to the value we need.
FORCED = {"incremental_streaming_output": True, "skip_tokenizer_init": False}


@dataclass(frozen=True, slots=True)
class ServerPlan:
    """What `sglang.Engine` is started with, and what the worker needs to know about it."""

    kwargs: dict[str, Any]
    page_size: int
    #: The ZMQ endpoint SGLang publishes KV events on (None: no KV events).
    kv_events_endpoint: str | None
    kv_events_topic: str
    dp_size: int


def split_host_port(addr: str, flag: str = "--leader-addr") -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise EngineError(f"{flag} must be HOST:PORT, got '{addr}'")
    return host, int(port)


def check_multi_node(config: EngineConfig) -> None:
    """SGLang's multi-node rules, as one clear line each."""
    if config.num_nodes < 1:
        raise EngineError(f"--num-nodes must be at least 1, got {config.num_nodes}")
    if config.num_nodes == 1:
        if config.node_rank != 0:
            raise EngineError("--node-rank needs --num-nodes > 1")
        return
    if not config.leader_addr:
        raise EngineError(
            "out=sglang with --num-nodes > 1 needs --leader-addr HOST:PORT "
            "(the leader's address, SGLang's --dist-init-addr)"
        )
    split_host_port(config.leader_addr)
    if config.node_rank != 0:
        raise EngineError(
            "dynamo-run runs the SGLang leader only (--node-rank 0); start node "
            f"{config.node_rank} with SGLang's own launcher: {follower_command(config)}"
        )
    if config.tensor_parallel_size % config.num_nodes:
        raise EngineError(
            f"--tensor-parallel-size is the GPU count over all nodes: "
            f"{config.tensor_parallel_size} is not a multiple of --num-nodes {config.num_nodes}"
        )


def follower_command(config: EngineConfig, node_rank: int | None = None) -> str:
    """The command that starts a follower node (upstream's instructions, one line)."""
    rank = config.node_rank if node_rank is None else node_rank
    return (
        f"python3 -m sglang.launch_server --model-path {config.model_path} "
        f"--tp {config.tensor_parallel_size} --dist-init-addr {config.leader_addr} "
        f"--nnodes {config.num_nodes} --node-rank {rank}"
    )


def _flag_kwargs(config: EngineConfig) -> dict[str, Any]:
    """ServerArgs set from flags: only those the user gave (SGLang's defaults stay otherwise)."""
    out: dict[str, Any] = {
        "model_path": config.model_path,
        "served_model_name": config.model_name,
        "page_size": DEFAULT_KV_CACHE_BLOCK_SIZE
        if config.kv_cache_block_size is None
        else config.kv_cache_block_size,
    }
    if config.model_config:
        out["tokenizer_path"] = config.model_config
    if config.context_length is not None:
        out["context_length"] = config.context_length
    if config.tensor_parallel_size != _DEFAULTS.tensor_parallel_size:
        out["tp_size"] = config.tensor_parallel_size
    if config.base_gpu_id != _DEFAULTS.base_gpu_id:
        out["base_gpu_id"] = config.base_gpu_id
    if config.num_nodes != _DEFAULTS.num_nodes:
        out["nnodes"] = config.num_nodes
        out["node_rank"] = config.node_rank
    if config.leader_addr:
        out["dist_init_addr"] = config.leader_addr
    return out


def kv_events_config(port: int, topic: str = "") -> str:
    """`--kv-events-config` JSON for a ZMQ publisher on this host's `port` (rank r: port + r)."""
    return json.dumps({"publisher": "zmq", "endpoint": f"tcp://*:{port}", "topic": topic})


def _user_kv_events(raw: Any) -> tuple[str | None, str]:
    """(endpoint, topic) of a user's own `kv_events_config` (JSON text or an object)."""
    try:
        cfg = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (ValueError, TypeError) as e:
        raise EngineError(f"--extra-engine-args: kv_events_config is not JSON: {e}") from None
    if cfg.get("publisher", "null") != "zmq":
        return None, ""
    return str(cfg.get("endpoint", "tcp://*:5557")), str(cfg.get("topic", ""))


def plan_server_args(
    config: EngineConfig, known: frozenset[str], kv_events_port: int | None
) -> ServerPlan:
    """The `sglang.Engine` keyword arguments for `config`.

    `known`: ServerArgs' field names. `kv_events_port`: where SGLang should publish KV events
    (a distributed worker relays them to routers); None for none, unless the user configured
    `kv_events_config` themselves, which is then used (and relayed) as given.
    """
    check_multi_node(config)
    extra: Mapping[str, Any] = dict(config.extra_engine_args or {})
    unknown = sorted(set(extra) - known)
    if unknown:
        raise EngineError(
            f"--extra-engine-args: SGLang's ServerArgs has no {', '.join(unknown)} "
            "(see python -m sglang.launch_server --help; the JSON keys are the flags' "
            "names with underscores)"
        )
    kwargs = _flag_kwargs(config)
    for name, value in extra.items():
        if name in FORCED and value != FORCED[name]:
            raise EngineError(
                f"--extra-engine-args: {name} must stay {FORCED[name]} for Dynamo's engine"
            )
        if name in kwargs and name != "page_size" and kwargs[name] != value:
            raise EngineError(
                f"--extra-engine-args: {name}={value!r} disagrees with the command line's "
                f"{kwargs[name]!r}; set it in one place"
            )
    if (
        "page_size" in extra
        and config.kv_cache_block_size is not None
        and extra["page_size"] != config.kv_cache_block_size
    ):
        raise EngineError(
            f"--extra-engine-args: page_size {extra['page_size']} disagrees with "
            f"--kv-cache-block-size {config.kv_cache_block_size}"
        )
    kwargs.update(extra)
    kwargs.update(FORCED)
    page_size = int(kwargs["page_size"])
    if page_size < 1:
        raise EngineError(f"the KV cache page size must be positive, got {page_size}")
    endpoint, topic = None, ""
    if "kv_events_config" in extra:
        endpoint, topic = _user_kv_events(extra["kv_events_config"])
    elif kv_events_port is not None:
        kwargs["kv_events_config"] = kv_events_config(kv_events_port)
        endpoint = f"tcp://*:{kv_events_port}"
    if endpoint is not None and kwargs.get("disable_radix_cache"):
        raise EngineError(
            "KV events need SGLang's prefix cache: drop disable_radix_cache "
            "(or kv_events_config) from --extra-engine-args"
        )
    if endpoint is not None:
        # The scheduler sends its load (KvMetrics) only with metrics on.
        kwargs.setdefault("enable_metrics", True)
    return ServerPlan(kwargs, page_size, endpoint, topic, int(kwargs.get("dp_size") or 1))


__all__ = [
    "FORCED",
    "ServerPlan",
    "check_multi_node",
    "follower_command",
    "kv_events_config",
    "plan_server_args",
    "split_host_port",
]
