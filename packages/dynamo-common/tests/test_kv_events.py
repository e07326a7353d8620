"""Upstream's RouterEvent JSON: the exact shapes, round trips, and malformed input."""

import orjson
import pytest

from dynamo.llm.kv.events import (
    Cleared,
    KvEventError,
    Removed,
    RouterEvent,
    Stored,
    StoredBlock,
    cleared_event_json,
    parse_router_event,
    removed_event_json,
    stored_event_json,
)


def test_stored_json_is_upstreams_shape() -> None:
    raw = stored_event_json(7, 1, None, [(12, 13), (14, 15)])
    assert orjson.loads(raw) == {
        "worker_id": 7,
        "event": {
            "event_id": 1,
            "dp_rank": 0,
            "data": {
                "stored": {
                    "parent_hash": None,
                    "blocks": [
                        {"block_hash": 12, "tokens_hash": 13},
                        {"block_hash": 14, "tokens_hash": 15},
                    ],
                }
            },
        },
    }


def test_removed_and_cleared_json() -> None:
    assert orjson.loads(removed_event_json(7, 2, [12])) == {
        "worker_id": 7,
        "event": {"event_id": 2, "dp_rank": 0, "data": {"removed": {"block_hashes": [12]}}},
    }
    assert orjson.loads(cleared_event_json(7, 3)) == {
        "worker_id": 7,
        "event": {"event_id": 3, "dp_rank": 0, "data": "cleared"},
    }


def test_parse_round_trip() -> None:
    big = 2**64 - 1
    stored = parse_router_event(stored_event_json(7, 1, big, [(big, 5)]))
    assert stored == RouterEvent(7, 1, Stored(big, (StoredBlock(big, 5),)))
    assert parse_router_event(stored.to_json()) == stored
    removed = parse_router_event(removed_event_json(7, 2, [1, 2]))
    assert removed.data == Removed((1, 2))
    assert parse_router_event(removed.to_json()) == removed
    cleared = parse_router_event(cleared_event_json(7, 3, dp_rank=1))
    assert cleared.data == Cleared() and cleared.dp_rank == 1
    assert parse_router_event(cleared.to_json()) == cleared


def test_parse_accepts_upstream_message_without_dp_rank_and_extra_fields() -> None:
    raw = b'{"worker_id":5,"event":{"event_id":9,"data":{"stored":{"parent_hash":null,"blocks":[{"block_hash":1,"tokens_hash":2,"mm_extra_info":null}]}}}}'
    event = parse_router_event(raw)
    assert event.dp_rank == 0
    assert event.data == Stored(None, (StoredBlock(1, 2),))


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{}",
        b'{"worker_id":1}',
        b'{"worker_id":1,"event":{"event_id":1,"data":"exploded"}}',
        b'{"worker_id":1,"event":{"event_id":1,"data":{"stored":{"blocks":[{"block_hash":1}]}}}}',
        b'{"worker_id":1,"event":{"event_id":1,"data":{"removed":{"block_hashes":[-1]}}}}',
        b'{"worker_id":"a","event":{"event_id":1,"data":"cleared"}}',
        b'{"worker_id":1,"event":{"event_id":1,"data":{"stored":{"parent_hash":1.5,"blocks":[]}}}}',
    ],
)
def test_malformed_events_raise(raw: bytes) -> None:
    with pytest.raises(KvEventError):
        parse_router_event(raw)
