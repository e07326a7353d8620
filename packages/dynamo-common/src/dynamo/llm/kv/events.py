"""Upstream Dynamo's KV event JSON (`RouterEvent`), built and parsed.

On the wire (one NATS message per event, subject `namespace.{ns}.component.{comp}.kv_events`):

    {"worker_id": 7, "event": {"event_id": 1, "dp_rank": 0, "data":
        {"stored": {"parent_hash": 11 | null, "blocks": [{"block_hash": 12, "tokens_hash": 13}]}}
      | {"removed": {"block_hashes": [12]}}
      | "cleared"}}

`block_hash` is the engine's own name for a block (opaque to the router); `tokens_hash` is the
local block hash of `dynamo.llm.kv.hashing`, which is what the router's radix tree is keyed by.
The shapes are frozen dataclasses rather than pydantic models: the router parses every event of
every worker, and a hand-written parser over `orjson.loads` is several times cheaper. Unknown
extra fields (later upstream versions add some) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

_MASK64 = (1 << 64) - 1


class KvEventError(ValueError):
    """A KV event message that is not valid upstream event JSON."""


@dataclass(frozen=True, slots=True)
class StoredBlock:
    block_hash: int
    tokens_hash: int


@dataclass(frozen=True, slots=True)
class Stored:
    """Blocks that a worker now holds, in order, continuing the block `parent_hash` (or a root)."""

    parent_hash: int | None
    blocks: tuple[StoredBlock, ...]


@dataclass(frozen=True, slots=True)
class Removed:
    """Blocks a worker evicted, by the engine's `block_hash`."""

    block_hashes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Cleared:
    """The worker dropped its whole cache."""


EventData = Stored | Removed | Cleared


@dataclass(frozen=True, slots=True)
class RouterEvent:
    worker_id: int
    event_id: int
    data: EventData
    dp_rank: int = 0

    def to_dict(self) -> dict[str, Any]:
        data: Any
        if isinstance(self.data, Stored):
            pairs = [(b.block_hash, b.tokens_hash) for b in self.data.blocks]
            data = _stored_data(self.data.parent_hash, pairs)
        elif isinstance(self.data, Removed):
            data = _removed_data(list(self.data.block_hashes))
        else:
            data = "cleared"
        return _envelope(self.worker_id, self.event_id, self.dp_rank, data)

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


# The `*_event_json` functions are what publishers call per event: they write the JSON straight
# from their arguments, without building a `RouterEvent` first.


def stored_event_json(
    worker_id: int,
    event_id: int,
    parent_hash: int | None,
    blocks: list[tuple[int, int]],
    dp_rank: int = 0,
) -> bytes:
    """The JSON of a `stored` event; `blocks` are `(block_hash, tokens_hash)` pairs."""
    return orjson.dumps(_envelope(worker_id, event_id, dp_rank, _stored_data(parent_hash, blocks)))


def removed_event_json(
    worker_id: int, event_id: int, block_hashes: list[int], dp_rank: int = 0
) -> bytes:
    """The JSON of a `removed` event."""
    return orjson.dumps(_envelope(worker_id, event_id, dp_rank, _removed_data(block_hashes)))


def cleared_event_json(worker_id: int, event_id: int, dp_rank: int = 0) -> bytes:
    """The JSON of a `cleared` event."""
    return orjson.dumps(_envelope(worker_id, event_id, dp_rank, "cleared"))


def _envelope(worker_id: int, event_id: int, dp_rank: int, data: Any) -> dict[str, Any]:
    """Upstream's `RouterEvent` JSON around one event's `data`."""
    return {
        "worker_id": worker_id,
        "event": {"event_id": event_id, "dp_rank": dp_rank, "data": data},
    }


def _stored_data(parent_hash: int | None, blocks: list[tuple[int, int]]) -> dict[str, Any]:
    return {
        "stored": {
            "parent_hash": parent_hash,
            "blocks": [{"block_hash": b, "tokens_hash": t} for b, t in blocks],
        }
    }


def _removed_data(block_hashes: list[int]) -> dict[str, Any]:
    return {"removed": {"block_hashes": block_hashes}}


def _u64(value: Any, what: str) -> int:
    if type(value) is not int or value < 0 or value > _MASK64:
        raise KvEventError(f"{what} must be an unsigned 64-bit integer, got {value!r}")
    return value


def parse_router_event(payload: bytes | str | dict[str, Any]) -> RouterEvent:
    """Parse one event message; `KvEventError` says what is wrong with a malformed one."""
    try:
        obj = orjson.loads(payload) if isinstance(payload, bytes | str) else payload
    except orjson.JSONDecodeError as e:
        raise KvEventError(f"KV event is not JSON: {e}") from None
    try:
        worker_id = _u64(obj["worker_id"], "worker_id")
        event = obj["event"]
        event_id = _u64(event["event_id"], "event_id")
        dp_rank = event.get("dp_rank") or 0
        raw = event["data"]
        data: EventData
        if raw == "cleared":
            data = Cleared()
        elif isinstance(raw, dict) and "stored" in raw:
            stored = raw["stored"]
            parent = stored.get("parent_hash")
            data = Stored(
                parent_hash=None if parent is None else _u64(parent, "parent_hash"),
                blocks=tuple(
                    StoredBlock(
                        _u64(b["block_hash"], "block_hash"), _u64(b["tokens_hash"], "tokens_hash")
                    )
                    for b in stored["blocks"]
                ),
            )
        elif isinstance(raw, dict) and "removed" in raw:
            data = Removed(tuple(_u64(h, "block_hash") for h in raw["removed"]["block_hashes"]))
        else:
            raise KvEventError(f"unknown KV event data {raw!r:.80}")
    except (KeyError, TypeError, AttributeError) as e:
        raise KvEventError(f"KV event is missing or mistypes a field: {e!r}") from None
    return RouterEvent(worker_id=worker_id, event_id=event_id, data=data, dp_rank=int(dp_rank))


__all__ = [
    "Cleared",
    "EventData",
    "KvEventError",
    "Removed",
    "RouterEvent",
    "Stored",
    "StoredBlock",
    "cleared_event_json",
    "parse_router_event",
    "removed_event_json",
    "stored_event_json",
]
