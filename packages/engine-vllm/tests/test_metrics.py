"""vLLM scheduler statistics → ForwardPassMetrics load reports (no vLLM)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dynamo.engines.vllm._metrics import LoadReporter
from dynamo.llm.kv.load_metrics import as_forward_pass_metrics


@dataclass
class PrefixCacheStats:  # vLLM's, read by attribute
    queries: int = 0
    hits: int = 0


@dataclass
class SchedulerStats:
    num_running_reqs: int = 0
    num_waiting_reqs: int = 0
    kv_cache_usage: float = 0.0
    prefix_cache_stats: PrefixCacheStats = field(default_factory=PrefixCacheStats)


class Sink:
    def __init__(self):
        self.sent = []

    def publish(self, metrics):
        self.sent.append(metrics)


def test_scheduler_stats_become_forward_pass_metrics():
    sink = Sink()
    reporter = LoadReporter(sink, num_gpu_blocks=200, max_num_seqs=8)
    reporter.record_scheduler_stats(SchedulerStats(3, 2, 0.25, PrefixCacheStats(100, 40)))
    reporter.record_scheduler_stats(SchedulerStats(1, 0, 0.5, PrefixCacheStats(100, 60)))
    first, last = sink.sent
    assert first["worker_stats"] == {
        "data_parallel_rank": 0,
        "request_active_slots": 3,
        "request_total_slots": 8,
        "num_requests_waiting": 2,
    }
    assert first["kv_stats"]["kv_active_blocks"] == 50
    assert first["kv_stats"]["gpu_prefix_cache_hit_rate"] == 0.4
    # The hit rate is over every step so far; vLLM's per-step counts are added up.
    assert last["kv_stats"] == {
        "kv_active_blocks": 100,
        "kv_total_blocks": 200,
        "gpu_cache_usage_perc": 0.5,
        "gpu_prefix_cache_hit_rate": 0.5,
    }
    # The shape WorkerMetricsPublisher validates.
    assert as_forward_pass_metrics(last).kv_stats.kv_active_blocks == 100


def test_without_a_sink_the_last_report_is_kept():
    reporter = LoadReporter(None, num_gpu_blocks=0, max_num_seqs=4)
    got = reporter.record(num_running=0, num_waiting=0, kv_cache_usage=1.5)
    assert reporter.last is got
    assert got["kv_stats"]["kv_total_blocks"] == 1  # never a division by zero downstream
    assert got["kv_stats"]["gpu_cache_usage_perc"] == 1.0
