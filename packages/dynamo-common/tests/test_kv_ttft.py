"""The `predicted` KV routing cost: time to first token per worker, learned online."""

from __future__ import annotations

import random

import pytest

from dynamo.llm.kv.events import stored_event_json
from dynamo.llm.kv.hashing import local_block_hashes, sequence_hashes
from dynamo.llm.kv.router import KvRouter
from dynamo.llm.kv.ttft import PRIOR, TtftFeatures, TtftModel

BS = 16
DOC = list(range(1000, 1000 + 4000))  # a 4000-token shared prefix (250 blocks)


def question(i: int) -> list[int]:
    return DOC + [50_000 + i] * 100


def announce(router: KvRouter, worker: int, tokens: list[int], eid: int = 1) -> None:
    local = local_block_hashes(tokens, BS)
    blocks = list(zip(sequence_hashes(local), local, strict=True))
    assert router.on_event(stored_event_json(worker, eid, None, blocks))


def prior_ttft(prefill_tokens: float, blocks: float = 0.0, busy: float = 0.0) -> float:
    c0, c1, c2, c3 = PRIOR
    return c0 + c1 * prefill_tokens / 1000 + c2 * blocks / 1000 + c3 * busy


# -- the model ------------------------------------------------------------------------------------


def test_the_model_learns_the_workers_timing_online():
    """Observations from a worker 3x slower than the prior, with a fixed per-request overhead,
    replace the prior: predictions end within a few percent."""
    model = TtftModel()
    rng = random.Random(0)

    def truth(f: TtftFeatures) -> float:
        return 0.05 + 45e-6 * f.prefill_tokens + 2e-5 * f.active_blocks

    for _ in range(400):
        f = TtftFeatures(rng.uniform(100, 20_000), rng.uniform(0, 3000))
        model.observe(1, f, truth(f))
    for f in (TtftFeatures(500, 0), TtftFeatures(10_000, 1000), TtftFeatures(18_000, 2500)):
        assert model.predict(1, f) == pytest.approx(truth(f), rel=0.05)
    assert model.relative_error < 0.05


def test_each_worker_has_its_own_speed():
    """Worker 2 takes twice as long as worker 1 for the same work: predicted twice as slow."""
    model = TtftModel()
    rng = random.Random(1)
    for _ in range(300):
        f = TtftFeatures(rng.uniform(100, 8000), rng.uniform(0, 500))
        t = 0.02 + 15e-6 * f.prefill_tokens
        model.observe(1, f, t)
        model.observe(2, f, 2 * t)
    f = TtftFeatures(4000, 100)
    assert model.predict(2, f) / model.predict(1, f) == pytest.approx(2.0, rel=0.1)
    model.remove_worker(2)
    assert model.speed(2) == 1.0


def test_the_model_learns_what_a_busy_worker_adds():
    """A first token on a worker that is running anything waits for the step in progress and
    shares the next one with its decodes: a fixed extra on top of the tokens and blocks
    (the mocker: ~20 ms; a cached prompt answers in ~22 ms idle and ~44 ms beside one decoding
    request). Learned as its own term, idle and busy predictions both end within a few
    percent; with only tokens and blocks to explain it, the model was ~25% off on average."""
    model = TtftModel()
    rng = random.Random(2)

    def truth(f: TtftFeatures) -> float:
        return 0.02 + 15e-6 * f.prefill_tokens + 1e-4 * f.active_blocks + 0.02 * f.busy

    for _ in range(400):
        busy = float(rng.random() < 0.6)
        f = TtftFeatures(rng.uniform(50, 8000), busy * rng.uniform(0, 300), busy)
        model.observe(1, f, truth(f))
    for f in (TtftFeatures(74, 0, 0.0), TtftFeatures(74, 62, 1.0), TtftFeatures(4000, 124, 1.0)):
        assert model.predict(1, f) == pytest.approx(truth(f), rel=0.05)
    assert model.coefficients()[3] == pytest.approx(0.02, rel=0.1)


def test_the_choice_follows_a_learned_busy_cost():
    """The holder runs one small request; idle worker 1 would prefill the whole 4100 tokens.
    With the prior's 10 ms for a busy worker the holder is sooner; where the router learned
    that a busy worker's first token comes 80 ms later, the cold prefill (62 ms) is."""
    r = KvRouter(BS, seed=0)
    announce(r, 2, DOC)
    r.scheduler.add_request("decoding", 2, BS, 0, [7])
    r.mark_prefill_completed("decoding")
    assert r.select(question(0), [1, 2], "a") == (2, 250)
    r.free("a")
    r.ttft.theta = [0.02, 0.015, 0.005, 0.08]
    assert r.select(question(1), [1, 2], "b") == (1, 0)


def test_an_overlap_always_lowers_the_prediction():
    """Even a model that learned a negative prefill coefficient keeps a positive one."""
    model = TtftModel(prior=(0.01, -0.5, 0.0))
    assert model.predict(1, TtftFeatures(100, 0)) < model.predict(1, TtftFeatures(4000, 0))


# -- the cost in the router: a busy holder against an idle cold worker ---------------------------


def test_a_lightly_loaded_holder_keeps_its_prefix():
    """Worker 2 holds the 4000-token prefix and has 1000 tokens queued: 1100 tokens of prefill
    there beat 4100 on idle worker 1."""
    r = KvRouter(BS, seed=0)
    announce(r, 2, DOC)
    r.scheduler.add_request("queued", 2, 1000, 0, [])  # 1000 tokens: one partial block
    costs, _ = r.scheduler.predicted_ttfts([1, 2], 4100, [], {2: 250}, r.ttft)
    assert costs == pytest.approx([prior_ttft(4100), prior_ttft(1100, 1, busy=1)])
    assert r.select(question(0), [1, 2], "q") == (2, 250)
    assert r._pending["q"].features == TtftFeatures(1100, 1, busy=1)


def test_a_busy_holder_loses_to_an_idle_cold_worker():
    """With 8000 tokens queued on the holder, the cold prefill of 4100 tokens elsewhere is
    predicted sooner."""
    r = KvRouter(BS, seed=0)
    announce(r, 2, DOC)
    r.scheduler.add_request("queued", 2, 8000, 0, [])
    assert prior_ttft(4100) < prior_ttft(8100, 1, busy=1)
    assert r.select(question(0), [1, 2], "q") == (1, 0)


def _decoding_holder(cost: str) -> KvRouter:
    """Worker 2 holds the prefix and is decoding requests that hold 2000 KV blocks."""
    r = KvRouter(BS, seed=0, cost=cost)
    announce(r, 2, DOC)
    r.scheduler.add_request("decoding", 2, 2000 * BS, 0, list(range(2000)))
    r.mark_prefill_completed("decoding")
    return r


def test_a_decoding_holder_keeps_its_prefix_where_the_blocks_cost_sends_it_away():
    """Decode steps slow a prefill a little (5 us per active block in the prior) while a cold
    prefill costs 15 us per token: the holder answers sooner. The blocks cost weighs one active
    block like one block to prefill and sends the request to the cold worker."""
    assert prior_ttft(100, 2000, busy=1) < prior_ttft(4100)
    assert _decoding_holder("predicted").select(question(0), [1, 2], "q") == (2, 250)
    # blocks: worker 2 = 100/16 + 2000 + 257 = 2263; worker 1 = 4100/16 + 257 = 513
    assert _decoding_holder("blocks").select(question(0), [1, 2], "q") == (1, 0)


def test_the_choice_follows_what_was_learned():
    """The same decoding holder, on a fleet where the router learned that decode load is what
    slows a first token down (0.1 ms per active block): the cold worker is now sooner."""
    r = _decoding_holder("predicted")
    r.ttft.theta = [0.02, 0.015, 0.1, 0.01]
    assert r.select(question(0), [1, 2], "q") == (1, 0)


def test_a_hot_prefix_gets_a_second_holder():
    """Every holder busy: the cold worker takes the prefix, and once it has announced the
    blocks it is a holder, so the next request stays with it while the first is still busy."""
    r = KvRouter(BS, seed=0)
    announce(r, 1, DOC)
    r.scheduler.add_request("long-1", 1, 16_000, 0, [])
    worker, overlap = r.select(question(0), [1, 2], "a")
    assert (worker, overlap) == (2, 0)
    r.mark_prefill_completed("a")
    announce(r, 2, question(0), eid=2)
    r.free("a")
    assert r.select(question(1), [1, 2], "b") == (2, 250)


def test_a_prefix_in_flight_counts_as_cached():
    """A document's first request has been prefilled but is still decoding, and its worker's
    KV event has not arrived yet: the next request for the document goes there all the same
    (the engine shares those blocks), not to an idle worker to prefill it again."""
    r = KvRouter(BS, seed=0, clock=lambda: 0.0)  # no time passes: nothing learned
    first, _ = r.select(question(0), [1, 2], "a")
    r.mark_prefill_completed("a")
    second, overlap = r.select(question(1), [1, 2], "b")
    assert (second, overlap) == (first, 250)  # predicted cached: the first request's blocks
    assert r.worker_load(first)["active_prefill_tokens"] == 100
    # While the first is still prefilling, waiting behind it (4100 + 100 tokens) is about as
    # long as a cold prefill of 4100 tokens on the idle worker: that one is sooner.
    r.free("b")
    r.scheduler.add_request("c", first, 4100, 0, [])
    assert r.select(question(2), [1, 2], "d")[0] != first


def test_the_router_learns_from_first_tokens_and_the_workers_waiting_queue():
    now = [100.0]
    waiting = {1: 0, 2: 0}
    r = KvRouter(BS, seed=0, clock=lambda: now[0], waiting=waiting.__getitem__)
    worker, _ = r.select(question(0), [1, 2], "a")
    now[0] += 0.5
    r.mark_prefill_completed("a")
    r.mark_prefill_completed("a")  # once
    assert r.ttft.observations == 1
    assert r.ttft.speed(worker) > 1.0  # 0.5 s was slower than the prior's 0.08 s
    r.free("a")
    # The other frontend's requests: worker 1 reports 3 waiting it did not get from here.
    r.scheduler.mean_prefill_tokens = 2000.0
    waiting[1] = 3
    _, features = r.scheduler.predicted_ttfts([1, 2], 100, [], {}, r.ttft, waiting)
    assert features[0].prefill_tokens == 100 + 3 * 2000
    assert features[1].prefill_tokens == 100


def test_predicted_against_actual_cached_tokens():
    r = KvRouter(BS, seed=0)
    announce(r, 2, DOC)
    r.select(question(0), [1, 2], "a")
    r.report_cached_tokens("a", 3968)  # the worker had evicted two blocks
    r.report_cached_tokens("a", 4000)  # counted once
    r.report_cached_tokens("unknown", 5)
    s = r.stats
    assert (s.cache_reports, s.predicted_cached_tokens, s.actual_cached_tokens) == (1, 4000, 3968)
    assert s.cached_tokens_abs_error == 32


def test_an_unknown_cost_is_refused():
    with pytest.raises(ValueError, match="unknown router cost 'fast'"):
        KvRouter(BS, cost="fast")


def test_a_full_kv_cache_makes_the_request_wait_for_a_running_one():
    """Worker 2 holds the prefix, but its 300-block cache is nearly full of decoding requests:
    the 7 new blocks do not fit, so it is predicted to wait for a request to end (the mean
    request time, learned from the requests that ended) and the idle worker takes it."""
    now = [0.0]
    capacity = {1: 300, 2: 300}
    r = KvRouter(BS, seed=0, capacity=capacity.__getitem__, clock=lambda: now[0])
    announce(r, 2, DOC)
    r.scheduler.add_request("decoding", 2, 296 * BS, 0, list(range(296)))
    r.scheduler.mark_prefill_completed("decoding")
    assert r.select(question(0), [1, 2], "q") == (1, 0)
    r.free("q")
    # room for it: the holder again
    capacity[2] = 600
    assert r.select(question(1), [1, 2], "q2") == (2, 250)
    now[0] = 2.0
    r.free("q2")
    assert r.ttft.request_s > 0.5  # learned from the request that took 2 s


def test_the_routers_overlap_weight_reaches_the_predicted_cost():
    """`--kv-overlap-score-weight` (the router's `overlap_score_weight`) weighs the prefill term
    of the predicted cost too; it was read only by the blocks cost (the predicted one took 1.0
    unless a request overrode it). Weight 0: prefill counts for nothing, so the two idle workers
    tie and the one with the smaller index wins; weight 1: the prefix holder wins."""
    tokens = question(0)
    for weight, expected in ((1.0, 2), (0.0, 1)):
        r = KvRouter(BS, overlap_score_weight=weight, seed=0)
        announce(r, 2, DOC)
        worker, _ = r.select(tokens, [1, 2], f"req-{weight}")
        assert worker == expected, weight
