"""dynamo-run's flags as SGLang ServerArgs: the mapping, multi-node rules, --extra-engine-args."""

from __future__ import annotations

import json

import pytest

from dynamo.engines.sglang._args import (
    FORCED,
    check_multi_node,
    follower_command,
    kv_events_config,
    plan_server_args,
)
from dynamo.llm import EngineConfig, EngineError
from dynamo.testing.engine_units import flag_mistakes

#: A slice of ServerArgs' real field names (the full set is read from SGLang at start).
KNOWN = frozenset(
    {
        "model_path",
        "tokenizer_path",
        "served_model_name",
        "context_length",
        "page_size",
        "tp_size",
        "dp_size",
        "base_gpu_id",
        "nnodes",
        "node_rank",
        "dist_init_addr",
        "incremental_streaming_output",
        "skip_tokenizer_init",
        "kv_events_config",
        "enable_metrics",
        "disable_radix_cache",
        "mem_fraction_static",
        "enable_deterministic_inference",
    }
)


def config(**kw) -> EngineConfig:
    return EngineConfig(model_name="qwen", model_path="/models/qwen", **kw)


def test_defaults_leave_sglang_its_own() -> None:
    plan = plan_server_args(config(), KNOWN, kv_events_port=None)
    assert plan.kwargs == {
        "model_path": "/models/qwen",
        "served_model_name": "qwen",
        "page_size": 16,
        **FORCED,
    }
    assert plan.page_size == 16 and plan.dp_size == 1
    assert plan.kv_events_endpoint is None


def test_every_flag_maps() -> None:
    plan = plan_server_args(
        config(
            model_config="/models/tok",
            context_length=4096,
            kv_cache_block_size=32,
            tensor_parallel_size=16,
            base_gpu_id=4,
            num_nodes=2,
            node_rank=0,
            leader_addr="10.0.0.1:5000",
        ),
        KNOWN,
        kv_events_port=None,
    )
    assert plan.kwargs | {} == {
        "model_path": "/models/qwen",
        "tokenizer_path": "/models/tok",
        "served_model_name": "qwen",
        "context_length": 4096,
        "page_size": 32,
        "tp_size": 16,
        "base_gpu_id": 4,
        "nnodes": 2,
        "node_rank": 0,
        "dist_init_addr": "10.0.0.1:5000",
        **FORCED,
    }
    assert plan.page_size == 32


def test_extra_engine_args_pass_through_and_are_checked() -> None:
    plan = plan_server_args(
        config(extra_engine_args={"mem_fraction_static": 0.8, "dp_size": 2, "page_size": 64}),
        KNOWN,
        kv_events_port=None,
    )
    assert plan.kwargs["mem_fraction_static"] == 0.8
    assert plan.dp_size == 2 and plan.page_size == 64 == plan.kwargs["page_size"]
    with pytest.raises(EngineError, match="incremental_streaming_output must stay True"):
        plan_server_args(
            config(extra_engine_args={"incremental_streaming_output": False}), KNOWN, None
        )
    with pytest.raises(EngineError, match="page_size 64 disagrees with --kv-cache-block-size 32"):
        plan_server_args(
            config(kv_cache_block_size=32, extra_engine_args={"page_size": 64}), KNOWN, None
        )


@pytest.mark.parametrize(
    ("fields", "message"), flag_mistakes(unknown="has no", context_field="context_length")
)
def test_flag_mistakes_are_refused_in_one_line(fields, message) -> None:
    with pytest.raises(EngineError, match=message):
        plan_server_args(config(**fields), KNOWN, kv_events_port=None)


def test_a_distributed_worker_gets_kv_events_and_metrics() -> None:
    plan = plan_server_args(config(), KNOWN, kv_events_port=5600)
    assert json.loads(plan.kwargs["kv_events_config"]) == {
        "publisher": "zmq",
        "endpoint": "tcp://*:5600",
        "topic": "",
    }
    assert plan.kv_events_endpoint == "tcp://*:5600" and plan.kwargs["enable_metrics"] is True
    assert kv_events_config(7, "t") == '{"publisher": "zmq", "endpoint": "tcp://*:7", "topic": "t"}'


def test_the_users_own_kv_events_config_is_relayed_as_given() -> None:
    own = {"publisher": "zmq", "endpoint": "tcp://*:6000", "topic": "kv"}
    plan = plan_server_args(
        config(extra_engine_args={"kv_events_config": json.dumps(own)}), KNOWN, 5600
    )
    assert (plan.kv_events_endpoint, plan.kv_events_topic) == ("tcp://*:6000", "kv")
    off = plan_server_args(
        config(extra_engine_args={"kv_events_config": {"publisher": "null"}}), KNOWN, 5600
    )
    assert off.kv_events_endpoint is None
    with pytest.raises(EngineError, match="not JSON"):
        plan_server_args(config(extra_engine_args={"kv_events_config": "{"}), KNOWN, None)


def test_kv_events_need_the_radix_cache() -> None:
    with pytest.raises(EngineError, match="disable_radix_cache"):
        plan_server_args(config(extra_engine_args={"disable_radix_cache": True}), KNOWN, 5600)
    # Without KV events the cache may be off.
    plan_server_args(config(extra_engine_args={"disable_radix_cache": True}), KNOWN, None)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"num_nodes": 2}, "needs --leader-addr"),
        ({"num_nodes": 2, "leader_addr": "nohost"}, "HOST:PORT"),
        ({"num_nodes": 1, "node_rank": 1}, "--node-rank needs --num-nodes > 1"),
        ({"num_nodes": 2, "leader_addr": "h:1", "tensor_parallel_size": 3}, "not a multiple"),
    ],
)
def test_multi_node_mistakes_are_one_line(kw, message) -> None:
    with pytest.raises(EngineError, match=message):
        check_multi_node(config(**kw))


def test_a_follower_rank_is_told_to_use_sglangs_launcher() -> None:
    cfg = config(num_nodes=2, node_rank=1, leader_addr="10.0.0.1:5000", tensor_parallel_size=16)
    with pytest.raises(EngineError) as e:
        check_multi_node(cfg)
    expected = (
        "python3 -m sglang.launch_server --model-path /models/qwen --tp 16 "
        "--dist-init-addr 10.0.0.1:5000 --nnodes 2 --node-rank 1"
    )
    assert expected in str(e.value)
    assert follower_command(cfg, node_rank=3).endswith("--node-rank 3")
