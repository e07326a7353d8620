"""SGLang's load reports as upstream's ForwardPassMetrics."""

from __future__ import annotations

from types import SimpleNamespace

from dynamo.engines.sglang._publishers import forward_pass_metrics
from dynamo.llm.kv.load_metrics import ForwardPassMetrics


def test_tokens_become_blocks_of_the_page_size() -> None:
    kv_metrics = SimpleNamespace(
        request_active_slots=3,
        request_total_slots=64,
        kv_active_blocks=1000,  # SGLang counts tokens here
        kv_total_blocks=16384,
        num_requests_waiting=2,
        gpu_cache_usage_perc=0.061,
        gpu_prefix_cache_hit_rate=0.5,
        data_parallel_rank=1,
    )
    metrics = forward_pass_metrics(kv_metrics, page_size=16)
    assert metrics == {
        "worker_stats": {
            "data_parallel_rank": 1,
            "request_active_slots": 3,
            "request_total_slots": 64,
            "num_requests_waiting": 2,
        },
        "kv_stats": {
            "kv_active_blocks": 62,
            "kv_total_blocks": 1024,
            "gpu_cache_usage_perc": 0.061,
            "gpu_prefix_cache_hit_rate": 0.5,
        },
        "spec_decode_stats": None,
    }
    ForwardPassMetrics.model_validate(metrics)  # the shape the publisher sends
