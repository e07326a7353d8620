"""The frontend's metrics: the batched inter-token histogram exposes what prometheus_client's
`Histogram` would for the same values, and a request's gaps land once, when it ends."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from dynamo.frontend.http.metrics import BatchedHistogram, FrontendMetrics

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def _lines(registry: CollectorRegistry) -> list[str]:
    """The exposition without `_created`, the sums rounded (they add in another order)."""
    lines = []
    for line in generate_latest(registry).decode().splitlines():
        if "_created" in line:
            continue
        if "_sum{" in line:
            name, value = line.rsplit(" ", 1)
            line = f"{name} {float(value):.9g}"
        lines.append(line)
    return lines


def test_batched_histogram_exposes_what_a_histogram_would():
    values = [0.0, 1e-5, 0.001, 0.0011, 0.7, 60.0, 61.0]  # on and around the bounds
    rng = random.Random(3)
    values += [rng.expovariate(50) for _ in range(500)] + [0.001, 0.0025, 60.0, 1000.0]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batched = BatchedHistogram("itl_seconds", "gaps", "model", BUCKETS, ours)
    plain = Histogram("itl_seconds", "gaps", ["model"], buckets=BUCKETS, registry=theirs)
    # Two requests' worth per model, one added at a time, as the frontend does.
    for model in ("a", "b"):
        for half in (values[::2], values[1::2]):
            counts, total = batched.new_counts(), 0.0
            for v in half:
                batched.count(counts, v)
                total += v
                plain.labels(model).observe(v)
            batched.add(model, counts, total)
    assert _lines(ours) == _lines(theirs)


def test_a_requests_gaps_are_added_when_it_finishes():
    metrics = FrontendMetrics("t")
    timer = metrics.track("m", "chat_completions", True)
    for tokens in (1, 2, 3, 5):  # the last piece brings two tokens: its gap counts twice
        timer.on_tokens(tokens)
    registry = metrics.registry

    def count() -> float | None:
        return registry.get_sample_value("t_inter_token_latency_seconds_count", {"model": "m"})

    assert count() is None  # nothing observed per token
    timer.finish("success", 7)
    assert count() == 4
    timer.finish("success", 7)  # once only
    assert count() == 4


def test_http_worker_gauge_names_the_process():
    metrics = FrontendMetrics("t")
    metrics.mark_http_worker(2, 4242)
    value = metrics.registry.get_sample_value("t_http_worker", {"index": "2", "pid": "4242"})
    assert value == 1
