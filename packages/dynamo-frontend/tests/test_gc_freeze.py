"""The collector tuned for serving: what lives is frozen, start-up's young garbage is not."""

from __future__ import annotations

import gc
import weakref

import pytest

from dynamo.frontend.gc_freeze import YOUNG_THRESHOLD, freeze_long_lived, tune_for_serving


class _Node:
    pass


@pytest.fixture
def collector():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_live_objects_are_frozen_and_young_cycles_collected_first(collector):
    kept = _Node()
    cycle = _Node()
    cycle.self = cycle  # type: ignore[attr-defined]
    garbage = weakref.ref(cycle)
    del cycle
    freeze_long_lived()
    assert garbage() is None  # collected, not frozen with the live objects
    assert all(o is not kept for o in gc.get_objects())  # frozen: out of the collector's walks


def test_tuning_raises_the_young_threshold(collector):
    tune_for_serving()
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
