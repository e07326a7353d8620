"""Prometheus metrics of the KV routers, read at scrape time (nothing is paid per token).

The router's own view:

dynamo_frontend_kv_hit_rate{model}                         overlap blocks / request blocks
dynamo_frontend_kv_overlap_blocks_total{model}             cached blocks the chosen workers had
dynamo_frontend_kv_request_blocks_total{model}             blocks of the routed requests
dynamo_frontend_kv_events_total{model}                     KV events received
dynamo_frontend_router_decisions_total{model,worker}       requests routed to each worker
dynamo_frontend_worker_active_blocks{model,worker}         KV blocks in use by routed requests
dynamo_frontend_worker_active_requests{model,worker}
dynamo_frontend_worker_active_prefill_tokens{model,worker}
dynamo_frontend_kv_workers_without_events{model}           workers routed by load alone

How right the router was, per request whose worker reported its prefix-cache hits
(`cached_tokens`) and per first token:

dynamo_frontend_router_cache_reports_total{model}             requests compared
dynamo_frontend_router_predicted_cached_tokens_total{model}   cached tokens the router predicted
dynamo_frontend_router_actual_cached_tokens_total{model}      cached tokens the workers reused
dynamo_frontend_router_cached_tokens_error_total{model}       sum of |predicted - actual|
dynamo_frontend_router_ttft_prediction_error{model}           recent mean |error| / TTFT of the
                                                              `predicted` cost (0..)

What the workers report (their latest `ForwardPassMetrics` on `kv_metrics`, summed over
data-parallel ranks; a worker that reported nothing has none of these):

dynamo_frontend_worker_kv_usage{model,worker}              gpu_cache_usage_perc (0..1)
dynamo_frontend_worker_kv_used_blocks{model,worker}        kv_active_blocks
dynamo_frontend_worker_kv_total_blocks{model,worker}       kv_total_blocks
dynamo_frontend_worker_requests_waiting{model,worker}      num_requests_waiting
dynamo_frontend_worker_request_slots_used{model,worker}    request_active_slots
dynamo_frontend_worker_request_slots_total{model,worker}   request_total_slots
dynamo_frontend_worker_prefix_cache_hit_rate{model,worker} gpu_prefix_cache_hit_rate (0..1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dynamo.llm.kv.load_metrics import WorkerLoad, WorkerLoads
from dynamo.llm.kv.router import KvRouter

#: Reports of workers that are not (or no longer) instances of the model are forgotten after
#: this many seconds without one (workers of other components share the namespace's subject).
FORGET_UNKNOWN_WORKERS_SECONDS = 60.0


class KvRouterCollector(Collector):
    def __init__(
        self, routers: Callable[[], Iterable[tuple[str, KvRouter, list[int]]]], prefix: str
    ):
        """`routers()` yields (model name, its router, its live worker ids)."""
        self._routers = routers
        self._prefix = prefix

    def collect(self) -> Iterator:
        p = self._prefix
        hit = GaugeMetricFamily(
            f"{p}_kv_hit_rate", "KV overlap blocks / request blocks", labels=["model"]
        )
        overlap = CounterMetricFamily(
            f"{p}_kv_overlap_blocks", "Cached blocks the chosen workers held", labels=["model"]
        )
        blocks = CounterMetricFamily(
            f"{p}_kv_request_blocks", "Blocks of the routed requests", labels=["model"]
        )
        events = CounterMetricFamily(f"{p}_kv_events", "KV events received", labels=["model"])
        decisions = CounterMetricFamily(
            f"{p}_router_decisions", "Requests routed to each worker", labels=["model", "worker"]
        )
        active_blocks = GaugeMetricFamily(
            f"{p}_worker_active_blocks",
            "KV blocks in use by routed requests",
            labels=["model", "worker"],
        )
        active_requests = GaugeMetricFamily(
            f"{p}_worker_active_requests", "Requests in flight", labels=["model", "worker"]
        )
        prefill = GaugeMetricFamily(
            f"{p}_worker_active_prefill_tokens",
            "Prompt tokens not yet prefilled",
            labels=["model", "worker"],
        )
        index_blocks = GaugeMetricFamily(
            f"{p}_kv_index_blocks",
            "(worker, block) entries in the KV router's index (bounded by --kv-index-max-blocks)",
            labels=["model"],
        )
        evicted = CounterMetricFamily(
            f"{p}_kv_index_evicted_blocks",
            "Index entries dropped to stay within --kv-index-max-blocks",
            labels=["model"],
        )
        silent = GaugeMetricFamily(
            f"{p}_kv_workers_without_events",
            "Workers that published no KV event (routed by load alone)",
            labels=["model"],
        )
        accuracy = [
            (CounterMetricFamily(f"{p}_router_{name}", text, labels=["model"]), field)
            for name, text, field in _ACCURACY_COUNTERS
        ]
        ttft_error = GaugeMetricFamily(
            f"{p}_router_ttft_prediction_error",
            "Recent mean relative error of the predicted time to first token",
            labels=["model"],
        )
        for model, router, workers in self._routers():
            stats = router.stats
            for family, field in accuracy:
                family.add_metric([model], getattr(stats, field))
            if router.ttft.observations:
                ttft_error.add_metric([model], router.ttft.relative_error)
            hit.add_metric([model], stats.hit_rate)
            overlap.add_metric([model], stats.overlap_blocks)
            blocks.add_metric([model], stats.request_blocks)
            events.add_metric([model], stats.events_received)
            index_blocks.add_metric([model], router.indexer.num_entries())
            evicted.add_metric([model], router.indexer.evicted_blocks)
            for worker, count in stats.decisions.items():
                decisions.add_metric([model, f"{worker:x}"], count)
            for worker in workers:
                load = router.worker_load(worker)
                active_blocks.add_metric([model, f"{worker:x}"], load["active_blocks"])
                active_requests.add_metric([model, f"{worker:x}"], load["active_requests"])
                prefill.add_metric([model, f"{worker:x}"], load["active_prefill_tokens"])
            silent.add_metric([model], len(router.workers_without_events(workers)))
        yield from (
            hit,
            overlap,
            blocks,
            events,
            decisions,
            active_blocks,
            active_requests,
            prefill,
            index_blocks,
            evicted,
            silent,
            *(family for family, _ in accuracy),
            ttft_error,
        )


# (metric name after `_router_`, help, KvRouterStats field)
_ACCURACY_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("cache_reports", "Requests whose worker reported its prefix-cache hits", "cache_reports"),
    (
        "predicted_cached_tokens",
        "Prompt tokens the router predicted the chosen worker had cached",
        "predicted_cached_tokens",
    ),
    (
        "actual_cached_tokens",
        "Prompt tokens the workers reported reusing from their prefix cache",
        "actual_cached_tokens",
    ),
    (
        "cached_tokens_error",
        "Sum over requests of |predicted - actual| cached tokens",
        "cached_tokens_abs_error",
    ),
)


# (metric suffix, help, WorkerLoad field)
_WORKER_LOAD_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("worker_kv_usage", "KV cache usage reported by the worker (0..1)", "gpu_cache_usage_perc"),
    ("worker_kv_used_blocks", "KV blocks in use reported by the worker", "kv_active_blocks"),
    ("worker_kv_total_blocks", "KV blocks of the worker", "kv_total_blocks"),
    ("worker_requests_waiting", "Requests queued on the worker", "num_requests_waiting"),
    ("worker_request_slots_used", "Request slots in use on the worker", "request_active_slots"),
    ("worker_request_slots_total", "Request slots of the worker", "request_total_slots"),
    (
        "worker_prefix_cache_hit_rate",
        "Prefix cache hit rate reported by the worker (0..1)",
        "gpu_prefix_cache_hit_rate",
    ),
)


class WorkerLoadCollector(Collector):
    def __init__(
        self, loads: Callable[[], Iterable[tuple[str, WorkerLoads, list[int]]]], prefix: str
    ):
        """`loads()` yields (model name, its workers' load reports, its live worker ids)."""
        self._loads = loads
        self._prefix = prefix

    def collect(self) -> Iterator:
        families = [
            (GaugeMetricFamily(f"{self._prefix}_{name}", text, labels=["model", "worker"]), field)
            for name, text, field in _WORKER_LOAD_GAUGES
        ]
        for model, loads, workers in self._loads():
            loads.prune(workers, FORGET_UNKNOWN_WORKERS_SECONDS)
            for worker in workers:
                load: WorkerLoad | None = loads.load(worker)
                if load is None:
                    continue
                labels = [model, f"{worker:x}"]
                for family, field in families:
                    family.add_metric(labels, getattr(load, field))
        yield from (family for family, _ in families)
