"""The KV router's flags (index budget, cost) on the command line, and its index and accuracy
on /metrics."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dynamo.frontend.flags import UsageError, parse_command_line
from dynamo.frontend.kv_metrics import KvRouterCollector
from dynamo.frontend.kv_routing import _cached_tokens
from dynamo.llm.kv.events import RouterEvent, Stored, StoredBlock
from dynamo.llm.kv.indexer import DEFAULT_MAX_BLOCKS
from dynamo.llm.kv.router import KvRouter


def test_flag_needs_the_kv_router():
    args = parse_command_line(["in=http", "out=dyn", "--router-mode", "kv"])
    assert args.kv_index_max_blocks is None  # the frontend then uses DEFAULT_MAX_BLOCKS
    args = parse_command_line(
        ["in=http", "out=dyn", "--router-mode", "kv", "--kv-index-max-blocks", "5000"]
    )
    assert args.kv_index_max_blocks == 5000
    with pytest.raises(UsageError, match="needs --router-mode kv"):
        parse_command_line(["in=http", "out=dyn", "--kv-index-max-blocks", "5000"])
    with pytest.raises(SystemExit):
        parse_command_line(
            ["in=http", "out=dyn", "--router-mode", "kv", "--kv-index-max-blocks", "0"]
        )


def test_router_cost_flag():
    args = parse_command_line(["in=http", "out=dyn", "--router-mode", "kv"])
    assert args.router_cost is None  # the frontend then uses predicted
    args = parse_command_line(
        ["in=http", "out=dyn", "--router-mode", "kv", "--router-cost", "blocks"]
    )
    assert args.router_cost == "blocks"
    with pytest.raises(UsageError, match="--router-cost is a KV router flag"):
        parse_command_line(["in=http", "out=dyn", "--router-cost", "blocks"])
    with pytest.raises(SystemExit):
        parse_command_line(["in=http", "out=dyn", "--router-mode", "kv", "--router-cost", "x"])


def test_cached_tokens_of_a_worker_delta():
    usage = {"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 8}}
    assert _cached_tokens({"token_ids": [1], "completion_usage": usage}) == 8
    assert _cached_tokens({"token_ids": [1]}) is None
    assert _cached_tokens({"completion_usage": {"prompt_tokens": 9}}) is None
    assert _cached_tokens({"completion_usage": {"prompt_tokens_details": None}}) is None
    assert _cached_tokens("text") is None


def test_prediction_accuracy_on_metrics():
    now = [0.0]
    router = KvRouter(block_size=16, clock=lambda: now[0])
    router.select(list(range(40)), [7], "a")
    router.report_cached_tokens("a", 16)
    registry = CollectorRegistry()
    registry.register(KvRouterCollector(lambda: [("m", router, [7])], "dynamo_frontend"))
    text = generate_latest(registry).decode()
    assert 'dynamo_frontend_router_cache_reports_total{model="m"} 1.0' in text
    assert 'dynamo_frontend_router_predicted_cached_tokens_total{model="m"} 0.0' in text
    assert 'dynamo_frontend_router_actual_cached_tokens_total{model="m"} 16.0' in text
    assert 'dynamo_frontend_router_cached_tokens_error_total{model="m"} 16.0' in text
    assert "router_ttft_prediction_error{" not in text  # nothing learned yet
    now[0] = 0.05
    router.mark_prefill_completed("a")
    assert "router_ttft_prediction_error{" in generate_latest(registry).decode()


def test_index_size_and_evictions_on_metrics():
    router = KvRouter(block_size=16, max_index_blocks=3)
    assert KvRouter(block_size=16).indexer.max_blocks == DEFAULT_MAX_BLOCKS
    for n in range(5):
        event = RouterEvent(7, n, Stored(None, (StoredBlock(n, n + 100),)))
        router.indexer.apply_event(event)
    registry = CollectorRegistry()
    registry.register(KvRouterCollector(lambda: [("m", router, [7])], "dynamo_frontend"))
    text = generate_latest(registry).decode()
    assert 'dynamo_frontend_kv_index_blocks{model="m"} 3.0' in text
    assert 'dynamo_frontend_kv_index_evicted_blocks_total{model="m"} 2.0' in text
