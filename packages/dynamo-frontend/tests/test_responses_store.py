"""The in-memory response store: bounded, least recently used out first, and expiring."""

from __future__ import annotations

import pytest

from dynamo.frontend.http.responses.store import ResponseStore
from dynamo.llm.errors import ResponseNotFoundError


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def put(store, rid):
    store.put({"id": rid}, [{"role": "user", "content": rid}])


def test_bound_drops_least_recently_used():
    store = ResponseStore(max_entries=2, ttl_seconds=100, clock=Clock())
    put(store, "a")
    put(store, "b")
    store.get("a")  # a is now the most recently used
    put(store, "c")
    assert len(store) == 2
    assert store.get("a").messages == [{"role": "user", "content": "a"}]
    with pytest.raises(ResponseNotFoundError):
        store.get("b")


def test_expiry_and_delete():
    clock = Clock()
    store = ResponseStore(max_entries=10, ttl_seconds=5, clock=clock)
    put(store, "a")
    clock.now = 4.9
    store.get("a")
    clock.now = 5.0
    with pytest.raises(ResponseNotFoundError) as e:
        store.get("a", "previous_response_id")
    assert e.value.status_code == 404 and e.value.param == "previous_response_id"
    put(store, "b")
    store.delete("b")
    with pytest.raises(ResponseNotFoundError):
        store.delete("b")


def test_byte_bound():
    store = ResponseStore(max_entries=100, ttl_seconds=100, max_bytes=250, clock=Clock())
    for rid in ("a", "b", "c", "d"):
        store.put({"id": rid, "text": "x" * 30}, [{"role": "user", "content": "y" * 30}])
    # Each entry is 110 bytes of JSON: only the two most recent fit in 250.
    assert len(store) == 2
    assert store.get("d") and store.get("c")
    with pytest.raises(ResponseNotFoundError):
        store.get("b")
