"""Load metrics shapes (upstream's constructors and JSON) and the per-worker table a router keeps."""

import orjson
import pytest
from pydantic import ValidationError

import dynamo.llm
from dynamo.llm.kv.load_metrics import (
    ForwardPassMetrics,
    KvStats,
    LoadEvent,
    SpecDecodeStats,
    WorkerLoad,
    WorkerLoads,
    WorkerStats,
    kv_metrics_subject,
)


def metrics(active=1, total=8, waiting=0, used=10, blocks=100, hit=0.5, rank=None):
    return ForwardPassMetrics(
        WorkerStats(active, total, waiting, rank), KvStats(used, blocks, used / blocks, hit)
    )


def message(worker: int, m: ForwardPassMetrics) -> bytes:
    return orjson.dumps({"worker_id": worker, "data": m.model_dump(mode="json")})


def test_subject_is_upstreams_namespace_subject() -> None:
    assert kv_metrics_subject("dynamo") == "namespace.dynamo.kv_metrics"


def test_upstream_constructors_positional_and_keyword() -> None:
    by_name = ForwardPassMetrics(
        worker_stats=WorkerStats(
            request_active_slots=2,
            request_total_slots=16,
            num_requests_waiting=1,
            data_parallel_rank=0,
        ),
        kv_stats=KvStats(
            kv_active_blocks=5,
            kv_total_blocks=50,
            gpu_cache_usage_perc=0.1,
            gpu_prefix_cache_hit_rate=0.25,
        ),
        spec_decode_stats=None,
    )
    positional = ForwardPassMetrics(WorkerStats(2, 16, 1, 0), KvStats(5, 50, 0.1, 0.25))
    assert by_name == positional
    assert by_name.model_dump() == {
        "worker_stats": {
            "request_active_slots": 2,
            "request_total_slots": 16,
            "num_requests_waiting": 1,
            "data_parallel_rank": 0,
        },
        "kv_stats": {
            "kv_active_blocks": 5,
            "kv_total_blocks": 50,
            "gpu_cache_usage_perc": 0.1,
            "gpu_prefix_cache_hit_rate": 0.25,
        },
        "spec_decode_stats": None,
    }
    spec = SpecDecodeStats(3, 10, 30, 20, [9, 7, 4])
    assert spec.num_accepted_tokens_per_pos == [9, 7, 4]
    with pytest.raises(TypeError):
        WorkerStats(1, 2, 3, request_active_slots=4)
    with pytest.raises(TypeError):
        KvStats(1, 2, 0.5, 0.5, 7)
    with pytest.raises(ValidationError):
        WorkerStats(1, 2)


def test_exported_from_dynamo_llm_like_upstream() -> None:
    from dynamo.llm import ForwardPassMetrics as F
    from dynamo.llm import KvStats as K
    from dynamo.llm import WorkerMetricsPublisher
    from dynamo.llm import WorkerStats as W

    assert F is ForwardPassMetrics and K is KvStats and W is WorkerStats
    assert WorkerMetricsPublisher.__module__ == "dynamo.llm.kv.metrics_publisher"
    assert {"ForwardPassMetrics", "KvStats", "WorkerStats", "WorkerMetricsPublisher"} <= set(
        dynamo.llm.__all__
    )
    with pytest.raises(AttributeError):
        _ = dynamo.llm.NoSuchThing


def test_load_event_parses_and_ignores_unknown_fields() -> None:
    m = metrics()
    raw = orjson.loads(message(7, m))
    raw["later_field"] = 1
    raw["data"]["kv_stats"]["another"] = 2
    event = LoadEvent.model_validate_json(orjson.dumps(raw))
    assert (event.worker_id, event.data) == (7, m)


def test_table_keeps_the_latest_per_worker_and_forgets_leavers() -> None:
    loads = WorkerLoads()
    assert loads.on_message(message(1, metrics(used=10)))
    assert loads.on_message(message(1, metrics(used=30, waiting=2)))
    assert loads.on_message(message(2, metrics(used=5)))
    assert not loads.on_message(b"not json")
    assert not loads.on_message(b'{"worker_id": 3, "data": {"kv_stats": {}}}')
    assert (loads.received, loads.invalid) == (3, 2)
    assert sorted(loads.workers()) == [1, 2]
    assert loads.load(1) == WorkerLoad(1, 8, 2, 30, 100, 0.3, 0.5)
    loads.remove_worker(1)
    loads.remove_worker(99)
    assert loads.workers() == [2] and loads.load(1) is None


def test_ranks_are_summed() -> None:
    loads = WorkerLoads()
    loads.update(4, metrics(active=1, total=8, waiting=1, used=10, blocks=100, hit=0.2, rank=0))
    loads.update(4, metrics(active=3, total=8, waiting=0, used=50, blocks=300, hit=0.4, rank=1))
    loads.update(4, metrics(active=2, total=8, waiting=0, used=20, blocks=100, hit=0.2, rank=0))
    load = loads.load(4)
    assert load is not None
    assert (load.request_active_slots, load.request_total_slots) == (5, 16)
    assert (load.num_requests_waiting, load.kv_active_blocks, load.kv_total_blocks) == (0, 70, 400)
    assert load.gpu_cache_usage_perc == pytest.approx(70 / 400)
    assert load.gpu_prefix_cache_hit_rate == pytest.approx(0.3)
    assert set(loads.metrics(4)) == {0, 1}


def test_prune_forgets_only_unknown_quiet_workers() -> None:
    now = [100.0]
    loads = WorkerLoads(clock=lambda: now[0])
    for worker in (1, 2, 3):
        loads.update(worker, metrics())
    now[0] = 150.0
    loads.update(3, metrics())
    loads.prune(live=[1], max_age=30)  # 2: unknown and quiet; 3: unknown but just reported
    assert sorted(loads.workers()) == [1, 3]
