"""Prometheus metrics of the HTTP frontend, named as upstream's (`dynamo_frontend_*`).

Each process gets its own registry (tests start several apps in one process). The per-request
work is a handful of label lookups done once per request; the one per-token metric, the
inter-token latency histogram, is counted into the request's own bucket list (a `bisect` and an
increment per token, no lock and no call into prometheus_client) and added to the histogram once
when the request ends (`BatchedHistogram`).
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_TOKEN_BUCKETS = (1, 8, 32, 128, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class FrontendMetrics:
    """The frontend's metrics in their own registry; the prefix follows `DYN_METRICS_PREFIX`."""

    def __init__(self, prefix: str | None = None):
        prefix = prefix or os.environ.get("DYN_METRICS_PREFIX") or "dynamo_frontend"
        self.prefix = prefix
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests_total = Counter(
            f"{prefix}_requests_total",
            "Requests handled, by model, endpoint, request type and outcome",
            ["model", "endpoint", "request_type", "status"],
            registry=r,
        )
        self.inflight = Gauge(
            f"{prefix}_inflight_requests", "Requests being handled now", ["model"], registry=r
        )
        self.disconnected = Counter(
            f"{prefix}_disconnected_clients",
            "Clients that left before their answer ended",
            registry=r,
        )
        self.duration = Histogram(
            f"{prefix}_request_duration_seconds",
            "Time from request to last token",
            ["model"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            f"{prefix}_time_to_first_token_seconds",
            "Time from request to first token",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = BatchedHistogram(
            f"{prefix}_inter_token_latency_seconds",
            "Time between consecutive streamed tokens",
            "model",
            _LATENCY_BUCKETS,
            r,
        )
        self.isl = Histogram(
            f"{prefix}_input_sequence_tokens",
            "Prompt length in tokens",
            ["model"],
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.osl = Histogram(
            f"{prefix}_output_sequence_tokens",
            "Answer length in tokens",
            ["model"],
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.output_tokens = Counter(
            f"{prefix}_output_tokens_total", "Tokens generated", ["model"], registry=r
        )
        self.migrations = Counter(
            f"{prefix}_model_migration_total",
            "Streams resumed on another worker after theirs was lost",
            ["model"],
            registry=r,
        )

    def mark_http_worker(self, index: int, pid: int) -> None:
        """Name this process on its `/metrics` when it is one of several `--http-workers`: a
        scrape of the shared port reaches one of them, and its counts are that process's."""
        Gauge(
            f"{self.prefix}_http_worker",
            "Which of the --http-workers processes answered this scrape (its counts are its own)",
            ["index", "pid"],
            registry=self.registry,
        ).labels(str(index), str(pid)).set(1)

    def inflight_total(self) -> float:
        """Requests being handled now, over all models (what a graceful shutdown waits for)."""
        return sum(s.value for metric in self.inflight.collect() for s in metric.samples)

    def on_migration(self, model: str) -> None:
        self.migrations.labels(model).inc()

    def track(self, model: str, endpoint: str, streaming: bool) -> RequestTimer:
        return RequestTimer(self, model, endpoint, "stream" if streaming else "unary")


class BatchedHistogram:
    """A histogram with one label whose observations arrive a request at a time.

    `prometheus_client.Histogram.observe` takes two locks and walks the buckets on every call;
    per token that was the frontend's largest metrics cost. Here a request counts its own
    observations into a plain list (`new_counts`, `bisect_left` for the bucket, as
    prometheus_client picks it: the first bound >= the value) and `add`s them once. The
    exposition is the same as a `Histogram`'s (`_bucket`, `_count`, `_sum`), without `_created`.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ):
        self.name = name
        self.documentation = documentation
        self.label = label
        self.bounds = tuple(float(b) for b in buckets)
        # label value -> (counts per bucket, the last one past every bound; sum of values)
        self._series: dict[str, tuple[list[int], list[float]]] = {}
        registry.register(self)

    def new_counts(self) -> list[int]:
        """A request's empty bucket counts, for `count` and `add`."""
        return [0] * (len(self.bounds) + 1)

    def count(self, counts: list[int], value: float, times: int = 1) -> None:
        """Count `value` (`times` times) into a request's `counts`."""
        counts[bisect_left(self.bounds, value)] += times

    def add(self, label_value: str, counts: list[int], total: float) -> None:
        """Add a request's counts, and the sum of its values, to the series of `label_value`."""
        series = self._series.get(label_value)
        if series is None:
            series = self._series[label_value] = (self.new_counts(), [0.0])
        totals, sums = series
        for i, n in enumerate(counts):
            if n:
                totals[i] += n
        sums[0] += total

    def observe(self, label_value: str, value: float) -> None:
        """One value, added at once."""
        counts = self.new_counts()
        self.count(counts, value)
        self.add(label_value, counts, value)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        for label_value, (counts, sums) in self._series.items():
            cumulative, buckets = 0, []
            for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric([label_value], buckets, sums[0])
        yield family


@dataclass(slots=True)
class RequestTimer:
    """Timing of one request, fed token by token; `finish` records the outcome once."""

    metrics: FrontendMetrics
    model: str
    endpoint: str
    request_type: str
    start: float = field(default_factory=time.perf_counter)
    last: float = 0.0
    tokens: int = 0
    done: bool = False
    #: This request's inter-token gaps, counted per bucket of the ITL histogram, and their sum:
    #: added to the histogram once, in `finish`.
    _itl_counts: list[int] = field(default_factory=list)
    _itl_sum: float = 0.0

    def __post_init__(self) -> None:
        self.metrics.inflight.labels(self.model).inc()
        self._itl_counts = self.metrics.itl.new_counts()

    def on_tokens(self, completion_tokens: int) -> None:
        """Called for each streamed piece with the running completion-token count."""
        now = time.perf_counter()
        new = completion_tokens - self.tokens
        if new <= 0:
            return
        if self.tokens == 0:
            self.metrics.ttft.labels(self.model).observe(now - self.start)
        else:
            # Spread the gap over the tokens it delivered, as upstream does for multi-token chunks.
            gap = (now - self.last) / new
            self.metrics.itl.count(self._itl_counts, gap, new)
            self._itl_sum += gap * new
        self.last = now
        self.tokens = completion_tokens

    def finish(self, status: str, prompt_tokens: int = 0, disconnected: bool = False) -> None:
        if self.done:
            return
        self.done = True
        m, model = self.metrics, self.model
        m.inflight.labels(model).dec()
        if self.tokens > 1:  # gaps were counted, whatever the outcome (as they were per token)
            m.itl.add(model, self._itl_counts, self._itl_sum)
        m.requests_total.labels(model, self.endpoint, self.request_type, status).inc()
        if disconnected:
            m.disconnected.inc()
        if status == "success":
            m.duration.labels(model).observe(time.perf_counter() - self.start)
            m.isl.labels(model).observe(prompt_tokens)
            m.osl.labels(model).observe(self.tokens)
            m.output_tokens.labels(model).inc(self.tokens)
