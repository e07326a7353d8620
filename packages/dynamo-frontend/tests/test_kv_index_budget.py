"""The KV router's index budget on the command line and on /metrics."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dynamo.frontend.flags import UsageError, parse_command_line
from dynamo.frontend.kv_metrics import KvRouterCollector
from dynamo.llm.kv.events import RouterEvent, Stored, StoredBlock
from dynamo.llm.kv.indexer import DEFAULT_MAX_BLOCKS
from dynamo.llm.kv.router import KvRouter


def test_flag_needs_the_kv_router():
    args = parse_command_line(["in=http", "out=dyn", "--router-mode", "kv"]).args
    assert args.kv_index_max_blocks is None  # the frontend then uses DEFAULT_MAX_BLOCKS
    args = parse_command_line(
        ["in=http", "out=dyn", "--router-mode", "kv", "--kv-index-max-blocks", "5000"]
    ).args
    assert args.kv_index_max_blocks == 5000
    with pytest.raises(UsageError, match="needs --router-mode kv"):
        parse_command_line(["in=http", "out=dyn", "--kv-index-max-blocks", "5000"])
    with pytest.raises(SystemExit):
        parse_command_line(
            ["in=http", "out=dyn", "--router-mode", "kv", "--kv-index-max-blocks", "0"]
        )


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
