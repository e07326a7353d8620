"""Cost, tie-breaking and sampling against hand-computed numbers."""

import math
import random
from collections import Counter

import pytest

from dynamo.llm.kv.scheduler import KvScheduler, softmax_probabilities

BS = 4


def test_cost_of_idle_workers() -> None:
    s = KvScheduler(BS)
    # isl 10: 3 request blocks (2 full + a partial). Worker 1 holds 2 blocks of it.
    logits = s.logits([1, 2], 10, [11, 12], {1: 2})
    # worker 1: prefill 10-8=2 -> 2/4 + 3 = 3.5; worker 2: 10/4 + 3 = 5.5
    assert logits == [3.5, 5.5]
    assert s.logits([1, 2], 10, [11, 12], {1: 2}, overlap_score_weight=0.0) == [3.0, 3.0]


def test_active_prefill_and_blocks_count() -> None:
    s = KvScheduler(BS)
    s.add_request("a", 1, isl_tokens=9, overlap_blocks=1, seq_hashes=[11, 12])
    assert s.load(1) == {"active_prefill_tokens": 5, "active_blocks": 3, "active_requests": 1}
    # New request shares block 11 with "a": 1 new full block + 1 partial.
    # worker 1: prefill 5 + 10 = 15 -> 3.75; decode 3 + 1 + 1 = 5 -> 8.75
    # worker 2: 10/4 + 3 = 5.5
    assert s.logits([1, 2], 10, [11, 13], {}) == [8.75, 5.5]
    s.mark_prefill_completed("a")
    assert s.load(1)["active_prefill_tokens"] == 0
    s.mark_prefill_completed("a")  # idempotent
    assert s.load(1)["active_prefill_tokens"] == 0
    assert s.logits([1], 10, [11, 13], {}) == [10 / 4 + 5]
    s.free("a")
    assert s.load(1) == {"active_prefill_tokens": 0, "active_blocks": 0, "active_requests": 0}
    s.free("a")  # idempotent


def test_shared_blocks_are_refcounted() -> None:
    s = KvScheduler(BS)
    s.add_request("a", 1, 8, 0, [11, 12])
    s.add_request("b", 1, 8, 2, [11, 12])
    assert s.load(1) == {"active_prefill_tokens": 8, "active_blocks": 2, "active_requests": 2}
    s.free("a")  # before its prefill completed: its prefill tokens go too
    assert s.load(1) == {"active_prefill_tokens": 0, "active_blocks": 2, "active_requests": 1}
    s.free("b")
    assert s.load(1)["active_blocks"] == 0


def test_argmin_and_tie_breaks() -> None:
    s = KvScheduler(BS, rng=random.Random(0))
    assert s.choose([1, 2, 3], [5.0, 3.0, 4.0], {}) == 2
    # Tie on the logit: the smaller tree wins.
    assert s.choose([1, 2, 3], [3.0, 3.0, 4.0], {1: 10, 2: 5}) == 2
    assert s.choose([1, 2, 3], [3.0, 3.0, 4.0], {1: 1, 2: 5}) == 1
    # Full tie: random among the tied, so both get picked over many draws.
    picks = Counter(s.choose([1, 2, 3], [3.0, 3.0, 4.0], {}) for _ in range(200))
    assert set(picks) == {1, 2}


def test_softmax_probabilities_by_hand() -> None:
    # logits 0, 1, 2 -> span 2 -> scaled (0, -0.5, -1) / T=0.5 -> (0, -1, -2)
    probs = softmax_probabilities([0.0, 1.0, 2.0], 0.5)
    e = [1.0, math.exp(-1), math.exp(-2)]
    assert probs == pytest.approx([x / sum(e) for x in e])
    assert softmax_probabilities([3.0, 3.0], 1.0) == [0.5, 0.5]


def test_sampling_follows_the_softmax() -> None:
    s = KvScheduler(BS, temperature=0.5, rng=random.Random(1234))
    n = 20000
    counts = Counter(s.choose([1, 2, 3], [0.0, 1.0, 2.0], {}) for _ in range(n))
    expected = softmax_probabilities([0.0, 1.0, 2.0], 0.5)
    for worker, p in zip([1, 2, 3], expected, strict=True):
        assert counts[worker] / n == pytest.approx(p, abs=0.015)
    # Per-call temperature 0 overrides the sampler.
    assert all(s.choose([1, 2, 3], [0.0, 1.0, 2.0], {}, temperature=0.0) == 1 for _ in range(20))


def test_remove_worker_forgets_its_requests() -> None:
    s = KvScheduler(BS)
    s.add_request("a", 1, 8, 0, [11, 12])
    s.add_request("b", 2, 8, 0, [11, 12])
    s.remove_worker(1)
    assert s.worker_of("a") is None and s.worker_of("b") == 2
    assert len(s) == 1
    s.free("a")
    assert s.load(1)["active_requests"] == 0


def test_no_workers() -> None:
    with pytest.raises(ValueError):
        KvScheduler(BS).choose([], [], {})
    with pytest.raises(ValueError):
        KvScheduler(0)
