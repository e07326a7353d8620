"""Prometheus metrics of the HTTP frontend, named as upstream's (`dynamo_frontend_*`).

Each process gets its own registry (tests start several apps in one process). The per-request
work is a handful of label lookups done once per request, then plain `observe` calls per token.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.itl = Histogram(
            f"{prefix}_inter_token_latency_seconds",
            "Time between consecutive streamed tokens",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
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

    def inflight_total(self) -> float:
        """Requests being handled now, over all models (what a graceful shutdown waits for)."""
        return sum(s.value for metric in self.inflight.collect() for s in metric.samples)

    def on_migration(self, model: str) -> None:
        self.migrations.labels(model).inc()

    def track(self, model: str, endpoint: str, streaming: bool) -> RequestTimer:
        return RequestTimer(self, model, endpoint, "stream" if streaming else "unary")


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
    # Labelled children looked up once per request: `labels()` costs microseconds per token.
    _itl: object = None

    def __post_init__(self) -> None:
        self.metrics.inflight.labels(self.model).inc()
        self._itl = self.metrics.itl.labels(self.model)

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
            observe = self._itl.observe  # type: ignore[attr-defined]
            for _ in range(new):
                observe(gap)
        self.last = now
        self.tokens = completion_tokens

    def finish(self, status: str, prompt_tokens: int = 0, disconnected: bool = False) -> None:
        if self.done:
            return
        self.done = True
        m, model = self.metrics, self.model
        m.inflight.labels(model).dec()
        m.requests_total.labels(model, self.endpoint, self.request_type, status).inc()
        if disconnected:
            m.disconnected.inc()
        if status == "success":
            m.duration.labels(model).observe(time.perf_counter() - self.start)
            m.isl.labels(model).observe(prompt_tokens)
            m.osl.labels(model).observe(self.tokens)
            m.output_tokens.labels(model).inc(self.tokens)
