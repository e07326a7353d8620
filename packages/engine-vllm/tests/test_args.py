"""`dynamo-run` flags and --extra-engine-args → vLLM AsyncEngineArgs keyword arguments (no vLLM)."""

from __future__ import annotations

import pytest

from dynamo.engines.vllm._args import (
    engine_kwargs,
    flag_kwargs,
    follower_command,
    set_visible_devices,
    split_host_port,
    visible_devices,
)
from dynamo.llm import EngineError

# A subset of vLLM 0.32's AsyncEngineArgs fields, enough for the mappings.
FIELDS = {
    "model", "tokenizer", "dtype", "max_model_len", "block_size", "tensor_parallel_size",
    "pipeline_parallel_size", "nnodes", "node_rank", "master_addr", "master_port",
    "enable_prefix_caching", "disable_log_stats", "enforce_eager", "kv_events_config",
}  # fmt: skip


def flags(**over):
    base = dict(
        context_length=None,
        kv_cache_block_size=None,
        tensor_parallel_size=1,
        num_nodes=1,
        node_rank=0,
        leader_addr=None,
        model_config=None,
    )
    return flag_kwargs(**(base | over))


def test_each_flag_maps_to_its_vllm_field():
    assert flags() == {"tensor_parallel_size": 1}
    got = flags(context_length=2048, kv_cache_block_size=32, tensor_parallel_size=4,
                model_config="/m/tok")  # fmt: skip
    assert got == {"tensor_parallel_size": 4, "max_model_len": 2048, "block_size": 32,
                   "tokenizer": "/m/tok"}  # fmt: skip


def test_multi_node_is_vllms_own_nnodes_and_master():
    got = flags(num_nodes=2, node_rank=0, leader_addr="10.0.0.1:29501", tensor_parallel_size=16)
    assert got == {"tensor_parallel_size": 16, "nnodes": 2, "node_rank": 0,
                   "master_addr": "10.0.0.1", "master_port": 29501}  # fmt: skip
    assert split_host_port("[fe80::1]:7000") == ("fe80::1", 7000)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"num_nodes": 2}, "needs --leader-addr"),
        ({"num_nodes": 2, "leader_addr": "h:1", "node_rank": 2}, "--node-rank must be in"),
        ({"num_nodes": 2, "leader_addr": "nohost"}, "HOST:PORT"),
        ({"num_nodes": 2, "leader_addr": "h:99999"}, "HOST:PORT"),
        ({"node_rank": 1}, "need --num-nodes > 1"),
        ({"leader_addr": "h:1"}, "need --num-nodes > 1"),
    ],
)
def test_bad_multi_node_flags_are_one_clear_error(over, message):
    with pytest.raises(EngineError, match=message):
        flags(**over)


def test_defaults_then_flags_then_extra_args():
    got = engine_kwargs("/m", {"tensor_parallel_size": 1}, [], {"enforce_eager": True}, FIELDS)
    assert got == {
        "enable_prefix_caching": True,
        "disable_log_stats": False,
        "tensor_parallel_size": 1,
        "enforce_eager": True,
        "model": "/m",
    }
    # Extra args may turn prefix caching off and set a field no flag was given for.
    got = engine_kwargs(
        "/m", {}, [], {"enable_prefix_caching": False, "max_model_len": 512}, FIELDS
    )
    assert got["enable_prefix_caching"] is False
    assert got["max_model_len"] == 512


def test_unknown_extra_arg_is_named():
    with pytest.raises(EngineError, match="AsyncEngineArgs has no field max_len, nope"):
        engine_kwargs("/m", {}, [], {"nope": 1, "max_len": 2}, FIELDS)


def test_extra_arg_owned_by_dynamo_is_refused():
    with pytest.raises(EngineError, match="model is set by dynamo-run"):
        engine_kwargs("/m", {}, [], {"model": "/other"}, FIELDS)


def test_extra_arg_repeating_a_given_flag_is_refused():
    with pytest.raises(EngineError, match="sets max_model_len, which --context-length also sets"):
        engine_kwargs(
            "/m", {"max_model_len": 1024}, ["context_length"], {"max_model_len": 512}, FIELDS
        )


def test_flag_the_installed_vllm_lacks_is_refused():
    with pytest.raises(EngineError, match="installed vLLM has no nnodes"):
        engine_kwargs("/m", {"nnodes": 2}, ["num_nodes"], {}, FIELDS - {"nnodes"})


def test_visible_devices_from_base_gpu_id():
    assert visible_devices(2, 2, None) == "2,3"
    # Indexes into what is already visible.
    assert visible_devices(1, 2, "4,5,6") == "5,6"
    with pytest.raises(EngineError, match="needs 4 visible devices"):
        visible_devices(2, 2, "0,1,2")


def test_set_visible_devices_only_when_asked():
    env: dict[str, str] = {}
    set_visible_devices(0, 2, env)
    assert env == {}
    set_visible_devices(1, 2, env)
    assert env == {"CUDA_VISIBLE_DEVICES": "1,2"}


def test_follower_command_is_vllms_headless_serve():
    kwargs = {"tensor_parallel_size": 16, "nnodes": 2, "node_rank": 1, "master_addr": "h",
              "master_port": 29501, "max_model_len": 4096}  # fmt: skip
    assert follower_command("/m", kwargs) == (
        "vllm serve /m --headless --tensor-parallel-size 16 --nnodes 2 --node-rank 1 "
        "--master-addr h --master-port 29501 --max-model-len 4096"
    )
