"""The mappings checked against SGLang's own classes, where SGLang is installed (it installs on a
CPU-only machine, though it cannot serve there): ServerArgs takes our arguments, SamplingParams
validates our sampling params, and its KV event and load-report encodings decode through ours.

Skipped where SGLang is missing (the workspace's dev environment leaves it out)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("sglang.srt.server_args", reason="SGLang is not installed")

import msgspec
from sglang.srt.disaggregation.kv_events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEventBatch,
)
from sglang.srt.managers.io_struct import msgpack_decode, msgpack_encode
from sglang.srt.managers.scheduler_components.kv_events_publisher import KvMetrics
from sglang.srt.sampling.sampling_params import SamplingParams
from sglang.srt.server_args import ServerArgs

from dynamo.engines.sglang._args import plan_server_args
from dynamo.engines.sglang._engine import server_arg_names
from dynamo.engines.sglang._publishers import forward_pass_metrics
from dynamo.engines.sglang._sampling import (
    SUPPORTED_FIELDS,
    generate_kwargs,
    sampling_params,
)
from dynamo.llm import EngineConfig, EngineError
from dynamo.llm.generation_options import GenerationOptions
from dynamo.llm.kv.hashing import block_hash
from dynamo.llm.kv.zmq_events import (
    EngineBlockRemoved,
    EngineBlockStored,
    EventForwarder,
    decode_event_batch,
)

VOCAB = 1000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A model folder with only a config: ServerArgs reads the architecture, not weights."""
    path = tmp_path_factory.mktemp("tiny-llama")
    (path / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_attention_heads": 4,
                "num_key_value_heads": 4,
                "num_hidden_layers": 2,
                "vocab_size": VOCAB,
                "max_position_embeddings": 2048,
                "rms_norm_eps": 1e-5,
            }
        )
    )
    return path


def test_server_args_take_every_flag(model_dir: Path) -> None:
    config = EngineConfig(
        model_name="tiny",
        model_path=str(model_dir),
        context_length=1024,
        kv_cache_block_size=32,
        tensor_parallel_size=4,
        base_gpu_id=2,
        num_nodes=2,
        node_rank=0,
        leader_addr="10.0.0.1:5000",
        extra_engine_args={"mem_fraction_static": 0.7},
    )
    plan = plan_server_args(config, server_arg_names(), kv_events_port=5600)
    args = ServerArgs(**plan.kwargs)
    assert (args.model_path, args.served_model_name) == (str(model_dir), "tiny")
    assert (args.context_length, args.page_size, args.tp_size, args.base_gpu_id) == (
        1024,
        32,
        4,
        2,
    )
    assert (args.nnodes, args.node_rank, args.dist_init_addr) == (2, 0, "10.0.0.1:5000")
    assert args.incremental_streaming_output is True and args.skip_tokenizer_init is False
    assert json.loads(args.kv_events_config)["endpoint"] == "tcp://*:5600"
    assert args.enable_metrics is True and args.mem_fraction_static == 0.7


def test_unknown_extra_args_are_refused_by_sglangs_own_field_list(model_dir: Path) -> None:
    config = EngineConfig(model_name="tiny", model_path=str(model_dir), extra_engine_args={"tp": 2})
    with pytest.raises(EngineError, match="has no tp"):
        plan_server_args(config, server_arg_names(), None)
    assert "tp_size" in server_arg_names()


def test_sampling_params_validate_in_sglang() -> None:
    opts = GenerationOptions.from_request(
        {
            "model": "m",
            "token_ids": [1, 2],
            "sampling_options": {
                "temperature": 0.7,
                "top_p": 0.9,
                "top_k": 20,
                "min_p": 0.1,
                "repetition_penalty": 1.1,
                "presence_penalty": 0.5,
                "frequency_penalty": -0.5,
                "seed": 3,
                "logit_bias": {"5": 2.0},
                "guided_decoding": {"choice": ["a", "b"]},
            },
            "stop_conditions": {"max_tokens": 10, "min_tokens": 2, "stop_token_ids": [7]},
            "eos_token_ids": [0],
            "output_options": {"logprobs": 2},
        },
        SUPPORTED_FIELDS,
    )
    params = SamplingParams(**sampling_params(opts, deterministic=True))
    params.verify(VOCAB)
    assert params.max_new_tokens == 10 and params.min_new_tokens == 2
    assert params.stop_token_ids == {7, 0} and params.sampling_seed == 3
    assert params.regex == "(a|b)" and params.top_k == 20
    assert params.logit_bias == {"5": 2.0}
    assert set(generate_kwargs(opts)) <= {"return_logprob", "top_logprobs_num", "logprob_start_len"}


def test_greedy_and_unbounded_requests_validate_in_sglang() -> None:
    opts = GenerationOptions.from_request(
        {"model": "m", "token_ids": [1], "sampling_options": {"temperature": 0}}
    )
    params = SamplingParams(**sampling_params(opts, deterministic=False))
    params.verify(VOCAB)
    assert params.max_new_tokens is None  # until EOS or the context is full
    assert params.top_k == 1  # SGLang's greedy


def test_sglangs_kv_events_decode_through_our_relay() -> None:
    tokens = list(range(100, 132))
    batch = KVEventBatch(
        ts=1.0,
        events=[
            BlockStored(
                block_hashes=[-7],
                parent_block_hash=None,
                token_ids=tokens[:16],
                block_size=16,
                lora_id=None,
                medium="GPU",
            ),
            BlockStored(
                block_hashes=[8],
                parent_block_hash=-7,
                token_ids=tokens[16:],
                block_size=16,
                lora_id=None,
            ),
            BlockRemoved(block_hashes=[8], medium="GPU"),
            BlockRemoved(block_hashes=[9], medium="CPU_PINNED"),
            AllBlocksCleared(),
        ],
    )
    decoded = decode_event_batch(msgspec.msgpack.encode(batch))
    mask = 2**64 - 1
    assert decoded.events[:3] == [
        EngineBlockStored([-7 & mask], None, tokens[:16], 16),
        EngineBlockStored([8], -7 & mask, tokens[16:], 16),
        EngineBlockRemoved([8]),
    ]
    assert len(decoded.events) == 4  # the CPU tier's removal is left out

    calls: list[tuple] = []

    class Sink:
        def publish_stored(self, *args) -> None:
            calls.append(("stored", *args))

        def publish_removed(self, *args) -> None:
            calls.append(("removed", *args))

        def publish_cleared(self, *args) -> None:
            calls.append(("cleared", *args))

    EventForwarder(Sink()).forward(decoded)
    assert calls[0] == ("stored", 0, tokens[:16], [16], [-7 & mask], 0, None)
    assert [c[0] for c in calls] == ["stored", "stored", "removed", "cleared"]
    assert block_hash(tokens[:16]) != -7 & mask  # our hashes are recomputed from the tokens


def test_sglangs_load_report_decodes_and_maps() -> None:
    sent = KvMetrics(
        request_active_slots=2,
        request_total_slots=32,
        kv_active_blocks=320,
        kv_total_blocks=3200,
        num_requests_waiting=1,
        gpu_cache_usage_perc=0.1,
        gpu_prefix_cache_hit_rate=0.25,
        data_parallel_rank=0,
    )
    received = msgpack_decode(msgpack_encode(sent))
    metrics = forward_pass_metrics(received, page_size=16)
    assert metrics["kv_stats"]["kv_active_blocks"] == 20
    assert metrics["kv_stats"]["kv_total_blocks"] == 200
    assert metrics["worker_stats"]["request_total_slots"] == 32


async def test_sglangs_own_zmq_publisher_reaches_our_kv_events() -> None:
    """SGLang's ZmqEventPublisher (the one its scheduler uses, made from the kv_events_config
    our worker passes) -> our relay -> our KvEventPublisher, over a real ZMQ socket."""
    import asyncio

    from sglang.srt.disaggregation.kv_events import EventPublisherFactory

    from dynamo.engines.sglang._args import kv_events_config
    from dynamo.engines.sglang._engine import free_port_range
    from dynamo.llm.kv.events import Stored, StoredBlock, parse_router_event
    from dynamo.llm.kv.publisher import KvEventPublisher
    from dynamo.llm.kv.zmq_events import ZmqKvEventRelay, subscriber_endpoint

    port = free_port_range(1)
    engine_side = EventPublisherFactory.create(kv_events_config(port), 0)
    sent: list[bytes] = []

    async def send(subject: str, payload: bytes) -> None:
        sent.append(payload)

    ours = KvEventPublisher(send, "ns", "comp", worker_id=1, kv_block_size=4)
    relay = ZmqKvEventRelay(subscriber_endpoint(f"tcp://*:{port}"), ours)
    relay.start()
    tokens = [7, 8, 9, 10]
    try:
        await relay.ready()
        for _ in range(100):  # until the subscription has reached the publisher
            engine_side.publish(
                KVEventBatch(
                    ts=1.0,
                    events=[
                        BlockStored(
                            block_hashes=[42],
                            parent_block_hash=None,
                            token_ids=tokens,
                            block_size=4,
                            lora_id=None,
                        )
                    ],
                )
            )
            await asyncio.sleep(0.05)
            if relay.batches:
                break
        await ours.flush()
        assert sent, "no event went through"
        event = parse_router_event(sent[0])
        assert event.data == Stored(None, (StoredBlock(42, block_hash(tokens)),))
    finally:
        await relay.close()
        await ours.close()
        engine_side.shutdown()


async def test_sglangs_load_reports_are_pulled_over_zmq(tmp_path) -> None:
    """The scheduler's side (a PUSH socket and SGLang's own sock_send of a KvMetrics) -> our
    PULL loop -> the metrics publisher, as a worker wires them."""
    import asyncio

    import zmq
    from sglang.srt.managers.io_struct import sock_send

    from dynamo.engines.sglang._publishers import Relays
    from dynamo.llm.kv.engine_publishers import EnginePublishers

    class Latest:
        def __init__(self) -> None:
            self.metrics: list[dict] = []

        def publish(self, metrics: dict) -> None:
            self.metrics.append(metrics)

    address = f"ipc://{tmp_path / 'metrics'}"
    latest = Latest()
    relays = Relays(EnginePublishers(metrics=latest))
    task = asyncio.ensure_future(relays._pull_load(address, page_size=16))
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(address)  # the scheduler connects; we bind
    try:
        sock_send(
            push,
            KvMetrics(
                request_active_slots=1,
                request_total_slots=8,
                kv_active_blocks=64,
                kv_total_blocks=1600,
                num_requests_waiting=0,
            ),
        )
        for _ in range(100):
            if latest.metrics:
                break
            await asyncio.sleep(0.02)
        (metrics,) = latest.metrics
        assert metrics["kv_stats"]["kv_active_blocks"] == 4
        assert metrics["kv_stats"]["kv_total_blocks"] == 100
    finally:
        task.cancel()
        push.close()
