"""The first-frame timeout follows measured acknowledgements (RFC 6298's estimator)."""

from __future__ import annotations

import pytest

from dynamo.runtime.ack_timeout import AckTimeout


def test_with_nothing_measured_it_is_the_floor():
    assert AckTimeout(1.0, 8.0).seconds() == 1.0


def test_fast_acknowledgements_keep_the_floor():
    timeout = AckTimeout(1.0, 8.0)
    for _ in range(50):
        timeout.observe(0.002)
    assert timeout.seconds() == 1.0


def test_slow_acknowledgements_raise_it_to_what_they_take_plus_their_spread():
    timeout = AckTimeout(1.0, 8.0)
    for sample in [0.8, 1.6, 0.9, 1.5, 1.2] * 10:
        timeout.observe(sample)
    # Mean ~1.2 s, deviation ~0.3 s: a request now waits well beyond the slowest ack seen.
    assert 1.6 < timeout.seconds() < 3.5


def test_a_quiet_host_again_brings_it_back_down():
    timeout = AckTimeout(1.0, 8.0)
    for _ in range(20):
        timeout.observe(2.0)
    assert timeout.seconds() > 2.0
    for _ in range(60):
        timeout.observe(0.005)
    assert timeout.seconds() == 1.0


def test_a_timeout_doubles_it_until_an_acknowledgement_is_measured():
    timeout = AckTimeout(1.0, 8.0)
    timeout.timed_out()
    assert timeout.seconds() == 2.0
    timeout.timed_out()
    assert timeout.seconds() == 4.0
    for _ in range(5):
        timeout.timed_out()
    assert timeout.seconds() == 8.0  # the ceiling
    timeout.observe(0.01)
    assert timeout.seconds() == 1.0


def test_floor_and_ceiling_are_checked():
    with pytest.raises(ValueError, match="floor"):
        AckTimeout(2.0, 1.0)
    with pytest.raises(ValueError, match="floor"):
        AckTimeout(0.0, 1.0)
