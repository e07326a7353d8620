"""KvRouter: events in, routing decisions out, request life cycle and the silent-worker flag."""

import logging

import pytest

from dynamo.llm.kv.events import removed_event_json, stored_event_json
from dynamo.llm.kv.hashing import local_block_hashes, sequence_hashes
from dynamo.llm.kv.router import SILENT_WORKER_THRESHOLD, KvRouter
from dynamo.llm.kv.scheduler import RouterConfigOverride

BS = 4
PROMPT = list(range(100, 113))  # 13 tokens: 3 full blocks + 1 partial


def announce(router: KvRouter, worker: int, tokens: list[int], eid: int = 1) -> list[int]:
    """Publish `tokens`' full blocks for `worker`, named by sequence hash as the mocker does."""
    local = local_block_hashes(tokens, BS)
    seq = sequence_hashes(local)
    assert router.on_event(stored_event_json(worker, eid, None, list(zip(seq, local, strict=True))))
    return seq


def test_routes_to_the_worker_with_the_prefix() -> None:
    r = KvRouter(BS, seed=0)
    announce(r, 2, PROMPT)
    worker, overlap = r.select(PROMPT, [1, 2, 3], "req-1")
    assert (worker, overlap) == (2, 3)
    assert r.worker_load(2) == {
        "active_prefill_tokens": 1,
        "active_blocks": 4,
        "active_requests": 1,
    }
    assert r.stats.decisions == {2: 1}
    assert r.stats.hit_rate == pytest.approx(3 / 4)


def test_load_outweighs_a_small_overlap() -> None:
    r = KvRouter(BS, seed=0)
    announce(r, 2, PROMPT[:4])
    # Busy worker 2: a long request still prefilling.
    r.scheduler.add_request("busy", 2, 400, 0, [])
    worker, overlap = r.select(PROMPT, [1, 2], "req-1")
    assert (worker, overlap) == (1, 0)
    r.free("busy")
    r.free("req-1")
    assert r.select(PROMPT, [1, 2], "req-2") == (2, 1)


def test_overrides() -> None:
    r = KvRouter(BS, seed=0, cost="blocks")
    announce(r, 2, PROMPT)
    r.scheduler.add_request("busy", 2, 16, 0, [1, 2, 3, 4])
    # weight 1: worker 2 costs (16 + 1)/4 + 4 + 4 = 12.25, worker 1 costs 13/4 + 4 = 7.25.
    assert r.select(PROMPT, [1, 2], "a")[0] == 1
    r.free("a")
    # weight 0: prefill ignored; worker 2: 4 + 4 = 8 vs worker 1: 4.
    assert r.select(PROMPT, [1, 2], "b", {"overlap_score_weight": 0.0})[0] == 1
    r.free("b")
    r.scheduler.free("busy")
    sampled = {
        r.select(PROMPT, [1, 2], f"c{i}", RouterConfigOverride(router_temperature=100.0))[0]
        for i in range(50)
    }
    assert sampled == {1, 2}


def test_removed_events_and_worker_removal() -> None:
    r = KvRouter(BS, seed=0)
    seq = announce(r, 2, PROMPT)
    assert r.on_event(removed_event_json(2, 2, seq[1:]))
    assert r.find_matches(PROMPT).scores == {2: 1}
    r.select(PROMPT, [2], "a")
    r.remove_worker(2)
    assert r.find_matches(PROMPT).scores == {}
    assert r.worker_load(2)["active_requests"] == 0
    r.free("a")  # after the worker left: harmless


def test_malformed_event_is_counted() -> None:
    r = KvRouter(BS)
    assert not r.on_event(b"{nope")
    assert r.stats.events_malformed == 1
    assert r.stats.events_received == 1


def test_silent_workers_flag_and_warning(caplog: pytest.LogCaptureFixture) -> None:
    r = KvRouter(BS, seed=0)
    announce(r, 2, [1, 2, 3, 4])
    assert r.workers_without_events([1, 2, 3]) == [1, 3]
    with caplog.at_level(logging.WARNING, logger="dynamo.llm.kv.router"):
        for i in range(SILENT_WORKER_THRESHOLD + 2):
            r.select(PROMPT, [1], f"r{i}")
            r.mark_prefill_completed(f"r{i}")
            r.free(f"r{i}")
        # A prompt shorter than a block proves nothing about the worker.
        r.select([1, 2], [3], "short")
        r.free("short")
    warnings = [rec for rec in caplog.records if "published no KV events" in rec.message]
    assert len(warnings) == 1
    assert "worker 1 " in warnings[0].message


def test_no_workers() -> None:
    with pytest.raises(ValueError):
        KvRouter(BS).select(PROMPT, [], "x")
