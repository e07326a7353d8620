"""vLLM's scheduler statistics as upstream's `ForwardPassMetrics` load reports.

vLLM hands every stat logger a `SchedulerStats` after each engine step (running and waiting
requests, KV cache usage 0..1, prefix cache queries and hits); upstream Dynamo's vLLM worker
plugs a stat logger in to publish them (`DynamoStatLoggerPublisher`). `LoadReporter` turns them
into the same `ForwardPassMetrics` shape the mocker reports, for `WorkerMetricsPublisher`, so the
KV router weighs real vLLM workers by their load exactly as it weighs mockers.

`LoadReporter` is plain Python (unit-tested without vLLM); `stat_logger_factory` wraps it in
vLLM's `StatLoggerBase` interface.
"""

from __future__ import annotations

from typing import Any

from dynamo.llm.kv.engine_publishers import MetricsSink


class LoadReporter:
    """Keeps the prefix cache totals and publishes one `ForwardPassMetrics` dict per step (to
    `sink`, when there is one: a worker's `WorkerMetricsPublisher`; `last` is always kept)."""

    def __init__(self, sink: MetricsSink | None, num_gpu_blocks: int, max_num_seqs: int) -> None:
        self.sink = sink
        self.num_gpu_blocks = max(1, num_gpu_blocks)
        self.max_num_seqs = max_num_seqs
        self.queries = 0
        self.hits = 0
        self.last: dict[str, Any] | None = None

    def record(
        self,
        *,
        num_running: int,
        num_waiting: int,
        kv_cache_usage: float,
        prefix_queries: int = 0,
        prefix_hits: int = 0,
        dp_rank: int = 0,
    ) -> dict[str, Any]:
        """One step's statistics; the prefix counts are that step's (vLLM resets them)."""
        self.queries += prefix_queries
        self.hits += prefix_hits
        usage = min(max(kv_cache_usage, 0.0), 1.0)
        self.last = {
            "worker_stats": {
                "data_parallel_rank": dp_rank,
                "request_active_slots": num_running,
                "request_total_slots": self.max_num_seqs,
                "num_requests_waiting": num_waiting,
            },
            "kv_stats": {
                "kv_active_blocks": round(usage * self.num_gpu_blocks),
                "kv_total_blocks": self.num_gpu_blocks,
                "gpu_cache_usage_perc": usage,
                "gpu_prefix_cache_hit_rate": self.hits / self.queries if self.queries else 0.0,
            },
            "spec_decode_stats": None,
        }
        if self.sink is not None:
            self.sink.publish(self.last)
        return self.last

    def record_scheduler_stats(self, stats: Any, dp_rank: int = 0) -> None:
        """From a vLLM `SchedulerStats` (read by attribute)."""
        prefix = getattr(stats, "prefix_cache_stats", None)
        self.record(
            num_running=stats.num_running_reqs,
            num_waiting=stats.num_waiting_reqs,
            kv_cache_usage=stats.kv_cache_usage,
            prefix_queries=getattr(prefix, "queries", 0) if prefix else 0,
            prefix_hits=getattr(prefix, "hits", 0) if prefix else 0,
            dp_rank=dp_rank,
        )


def stat_logger_factory(reporters: dict[int, LoadReporter], make: Any) -> Any:
    """A vLLM stat logger factory: `make(vllm_config)` builds the `LoadReporter` of each
    data-parallel engine, kept in `reporters` by engine index."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class DynamoLoadLogger(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            self.engine_index = engine_index
            self.reporter = reporters.setdefault(engine_index, make(vllm_config))

        def record(
            self,
            scheduler_stats: Any,
            iteration_stats: Any,
            mm_cache_stats: Any = None,
            engine_idx: int = 0,
        ) -> None:
            if scheduler_stats is not None:
                self.reporter.record_scheduler_stats(scheduler_stats, engine_idx)

        def log_engine_initialized(self) -> None:
            self.reporter.record(num_running=0, num_waiting=0, kv_cache_usage=0.0)

    return DynamoLoadLogger


__all__ = ["LoadReporter", "MetricsSink", "stat_logger_factory"]
