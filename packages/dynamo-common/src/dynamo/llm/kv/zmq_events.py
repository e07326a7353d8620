"""Relay an engine's own KV cache events (vLLM's or SGLang's ZMQ publisher) into our format.

vLLM and SGLang publish the same stream (SGLang copied vLLM's `kv_events.py`): a ZMQ PUB socket
sends multipart messages `(topic, seq as 8 big-endian bytes, payload)`, the payload a msgpack
`EventBatch` array `[ts, [event, ...], data_parallel_rank]`. Each event is `BlockStored`,
`BlockRemoved` or `AllBlocksCleared`, encoded as a map with a `"type"` tag (vLLM >= 0.26, SGLang
0.5) or, in older releases, as an array whose first item is the tag
(`["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium]`).
Both forms are read.

Engines hash blocks their own way (vLLM: SHA-256 of a pickle; SGLang: a SHA-256 chain), so the
engine's hashes stay opaque ids and `KvEventPublisher` re-hashes each full block's tokens
(`dynamo.llm.kv.hashing`). A hash sent as bytes (vLLM with `VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0`)
becomes the integer vLLM itself would send: its big-endian value, low 64 bits.

What is left out, as upstream's relay (`lib/kv-router/src/zmq_wire.rs`) does: events of a KV
cache group other than 0 (hybrid models' sliding-window groups), and blocks stored outside the
GPU (`medium` other than `"GPU"`: CPU or disk offload tiers), which the router does not score.

`decode_event_batch` is pure (unit-tested alone); `ZmqKvEventRelay` owns the SUB socket. Both
need `msgspec`, the relay `pyzmq`; the engine packages that use them depend on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

_MASK64 = (1 << 64) - 1
#: Positional field order of the array-encoded events (vLLM <= 0.10).
_STORED_FIELDS = (
    "block_hashes",
    "parent_block_hash",
    "token_ids",
    "block_size",
    "lora_id",
    "medium",
)
_REMOVED_FIELDS = ("block_hashes", "medium")


class KvEventSink(Protocol):
    """Where relayed events go: `dynamo.llm.kv.KvEventPublisher` is one."""

    def publish_stored(
        self,
        event_id: int,
        token_ids: Sequence[int],
        num_block_tokens: Sequence[int],
        block_hashes: Sequence[int],
        lora_id: int = 0,
        parent_hash: int | None = None,
    ) -> None: ...

    def publish_removed(self, event_id: int, block_hashes: Sequence[int]) -> None: ...

    def publish_cleared(self, event_id: int) -> None: ...


@dataclass(frozen=True, slots=True)
class EngineBlockStored:
    block_hashes: list[int]
    parent_block_hash: int | None
    token_ids: list[int]
    block_size: int
    lora_id: int | None = None

    def num_block_tokens(self) -> list[int]:
        """Tokens per block: `block_size` each, the last one short when the tokens run out
        (SGLang's last page can be partial; `KvEventPublisher` stops before a partial block)."""
        out, left = [], len(self.token_ids)
        for _ in self.block_hashes:
            n = max(0, min(self.block_size, left))
            out.append(n)
            left -= n
        return out


@dataclass(frozen=True, slots=True)
class EngineBlockRemoved:
    block_hashes: list[int]


@dataclass(frozen=True, slots=True)
class EngineAllCleared:
    pass


EngineKvEvent = EngineBlockStored | EngineBlockRemoved | EngineAllCleared


@dataclass(frozen=True, slots=True)
class EngineEventBatch:
    ts: float
    events: list[EngineKvEvent]
    data_parallel_rank: int | None


class KvEventDecodeError(ValueError):
    """A payload that is not an engine KV event batch."""


def engine_hash(value: Any) -> int:
    """An engine block hash as an unsigned 64-bit id (bytes: big-endian, low 64 bits)."""
    if isinstance(value, bytes | bytearray):
        return int.from_bytes(value, "big") & _MASK64
    if isinstance(value, int) and not isinstance(value, bool):
        return value & _MASK64
    raise KvEventDecodeError(f"block hash {value!r} is neither an int nor bytes")


def _fields(raw: Any, positional: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    if isinstance(raw, dict):
        kind = raw.get("type")
        return str(kind), raw
    if isinstance(raw, list | tuple) and raw and isinstance(raw[0], str):
        return raw[0], dict(zip(positional, raw[1:], strict=False))
    raise KvEventDecodeError(f"not a KV cache event: {raw!r:.80}")


def _relevant(fields: dict[str, Any]) -> bool:
    medium = fields.get("medium")
    group = fields.get("group_idx") or 0
    return group == 0 and (medium is None or medium == "GPU")


def decode_event(raw: Any) -> EngineKvEvent | None:
    """One engine event, or None for one the router does not use (see the module docstring)."""
    kind, _ = _fields(raw, ())
    if kind == "BlockStored":
        _, f = _fields(raw, _STORED_FIELDS)
        if not _relevant(f):
            return None
        parent = f.get("parent_block_hash")
        return EngineBlockStored(
            block_hashes=[engine_hash(h) for h in f.get("block_hashes") or ()],
            parent_block_hash=None if parent is None else engine_hash(parent),
            token_ids=list(f.get("token_ids") or ()),
            block_size=int(f.get("block_size") or 0),
            lora_id=f.get("lora_id"),
        )
    if kind == "BlockRemoved":
        _, f = _fields(raw, _REMOVED_FIELDS)
        if not _relevant(f):
            return None
        return EngineBlockRemoved([engine_hash(h) for h in f.get("block_hashes") or ()])
    if kind == "AllBlocksCleared":
        return EngineAllCleared()
    log.debug("ignoring KV event of unknown type %r", kind)
    return None


def decode_event_batch(payload: bytes) -> EngineEventBatch:
    """Decode one msgpack `EventBatch` payload."""
    import msgspec

    try:
        raw = msgspec.msgpack.decode(payload)
    except msgspec.DecodeError as e:
        raise KvEventDecodeError(f"KV event batch is not msgpack: {e}") from None
    if isinstance(raw, dict):  # a map-encoded batch, should a release drop array_like
        ts, events, rank = raw.get("ts"), raw.get("events"), raw.get("data_parallel_rank")
    elif isinstance(raw, list) and len(raw) >= 2:
        ts, events, rank = raw[0], raw[1], raw[2] if len(raw) > 2 else None
    else:
        raise KvEventDecodeError(f"not a KV event batch: {raw!r:.80}")
    if not isinstance(events, list):
        raise KvEventDecodeError("KV event batch has no event list")
    decoded = [e for e in (decode_event(r) for r in events) if e is not None]
    return EngineEventBatch(float(ts or 0.0), decoded, rank)


class EventForwarder:
    """Hands decoded events to a sink with our own increasing event ids."""

    def __init__(self, sink: KvEventSink) -> None:
        self.sink = sink
        self.next_event_id = 0
        #: Stored events of LoRA adapters left out (the router cannot tell them apart).
        self.lora_skipped = 0

    def forward(self, batch: EngineEventBatch) -> None:
        for event in batch.events:
            if isinstance(event, EngineBlockStored) and event.lora_id:
                # Block hashes carry no adapter here (`KvEventPublisher.publish_stored`): an
                # adapter's blocks would pass for the base model's. Left out, said once.
                if not self.lora_skipped:
                    log.warning(
                        "KV events of LoRA adapters (lora_id %s) are not routed on: only the "
                        "base model's blocks are published",
                        event.lora_id,
                    )
                self.lora_skipped += 1
                continue
            event_id = self.next_event_id
            self.next_event_id += 1
            if isinstance(event, EngineBlockStored):
                self.sink.publish_stored(
                    event_id,
                    event.token_ids,
                    event.num_block_tokens(),
                    event.block_hashes,
                    0,
                    event.parent_block_hash,
                )
            elif isinstance(event, EngineBlockRemoved):
                self.sink.publish_removed(event_id, event.block_hashes)
            else:
                self.sink.publish_cleared(event_id)


def subscriber_endpoint(endpoint: str, rank_offset: int = 0) -> str:
    """Where to connect for a publisher configured with `endpoint` (the engines bind
    `tcp://*:PORT`; data-parallel rank r publishes on PORT + r, as their
    `offset_endpoint_port`)."""
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
        host = "127.0.0.1" if host in ("*", "0.0.0.0", "") else host
        return f"tcp://{host}:{int(port) + rank_offset}"
    if rank_offset and endpoint.startswith("inproc://"):
        return f"{endpoint}_dp{rank_offset}"
    return endpoint


class ZmqKvEventRelay:
    """Subscribes to an engine's KV event publisher and forwards every batch to a sink.

        relay = ZmqKvEventRelay("tcp://127.0.0.1:5557", publisher)
        relay.start()      # a task on the running loop
        ...
        await relay.close()

    A gap in the publisher's sequence numbers (its send queue overflowed) is logged and counted
    in `missed`: the router's view of this worker is then incomplete until blocks are evicted.
    """

    def __init__(self, endpoint: str, sink: KvEventSink, topic: str = "") -> None:
        self.endpoint = endpoint
        self.topic = topic
        self.forwarder = EventForwarder(sink)
        self.batches = 0
        self.missed = 0
        self._last_seq: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="kv-zmq-relay")

    async def ready(self) -> None:
        """Wait until the SUB socket is connected and subscribed."""
        await self._ready.wait()

    def handle(self, frames: Sequence[bytes]) -> None:
        """One multipart message: `(topic, seq, payload)`."""
        if len(frames) != 3:
            log.warning("KV relay %s: message of %d frames ignored", self.endpoint, len(frames))
            return
        seq = int.from_bytes(frames[1], "big", signed=True)
        if self._last_seq is not None and seq > self._last_seq + 1:
            self.missed += seq - self._last_seq - 1
            log.warning(
                "KV relay %s: %d event batches lost (seq %d after %d)",
                self.endpoint,
                seq - self._last_seq - 1,
                seq,
                self._last_seq,
            )
        self._last_seq = seq
        try:
            batch = decode_event_batch(frames[2])
        except KvEventDecodeError as e:
            log.warning("KV relay %s: %s", self.endpoint, e)
            return
        self.batches += 1
        self.forwarder.forward(batch)

    async def _run(self) -> None:
        import zmq
        import zmq.asyncio

        ctx = zmq.asyncio.Context.instance()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.endpoint)
            sock.setsockopt(zmq.SUBSCRIBE, self.topic.encode())
            self._ready.set()
            while True:
                frames = await sock.recv_multipart()
                try:
                    self.handle(frames)
                except Exception:  # a bad batch costs routing quality, never the worker
                    log.exception("KV relay %s: could not forward a batch", self.endpoint)
        finally:
            sock.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


__all__ = [
    "EngineAllCleared",
    "EngineBlockRemoved",
    "EngineBlockStored",
    "EngineEventBatch",
    "EventForwarder",
    "KvEventDecodeError",
    "KvEventSink",
    "ZmqKvEventRelay",
    "decode_event",
    "decode_event_batch",
    "engine_hash",
    "subscriber_endpoint",
]
