"""Least-loaded and power-of-two choices over a client's in-flight counts."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from dynamo.runtime.load_balance import pick_by_load


def test_least_loaded_takes_the_instance_with_fewest_in_flight():
    assert pick_by_load("least-loaded", [1, 2, 3], {1: 4, 2: 1, 3: 2}) == 2
    # an instance missing from the counts is idle
    assert pick_by_load("least-loaded", [1, 2, 3], {1: 4, 2: 1}) == 3


def test_least_loaded_breaks_ties_at_random():
    rng = random.Random(0)
    seen = Counter(pick_by_load("least-loaded", [1, 2, 3], {1: 1}, rng) for _ in range(300))
    assert set(seen) == {2, 3}
    assert min(seen.values()) > 100


def test_power_of_two_takes_the_less_loaded_of_two_distinct_draws():
    rng = random.Random(1)
    in_flight = {1: 0, 2: 5, 3: 9}
    seen = Counter(pick_by_load("power-of-two", [1, 2, 3], in_flight, rng) for _ in range(600))
    # the busiest is never the less loaded of two distinct instances
    assert 3 not in seen
    # the idle one wins whenever drawn (2 of 3 pairs), the middle one only against the busiest
    assert 350 < seen[1] < 450
    assert 150 < seen[2] < 250


def test_power_of_two_with_one_instance_and_ties():
    assert pick_by_load("power-of-two", [7], {7: 3}) == 7
    rng = random.Random(2)
    seen = Counter(pick_by_load("power-of-two", [1, 2], {}, rng) for _ in range(200))
    assert set(seen) == {1, 2}


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="no instances"):
        pick_by_load("least-loaded", [], {})
    with pytest.raises(ValueError, match="unknown load-aware mode 'fastest'"):
        pick_by_load("fastest", [1, 2], {})
