"""Helpers for the mocker's tests: a scheduler with a recording event sink, run step by step."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dynamo.llm.kv.events import RouterEvent, parse_router_event
from dynamo.llm.kv.indexer import RadixIndexer
from dynamo.llm.kv.publisher import KvEventPublisher

WORKER = 7


class Recorder(KvEventPublisher):
    """A real publisher whose `send` keeps the parsed events (await `flush()` before reading)."""

    def __init__(self, block_size: int) -> None:
        super().__init__(self._keep, "ns", "mocker", WORKER, block_size)
        self.events: list[RouterEvent] = []

    async def _keep(self, subject: str, payload: bytes) -> None:
        self.events.append(parse_router_event(payload))

    async def replay(self) -> RadixIndexer:
        """An indexer fed every event so far, as a router would be."""
        await self.flush()
        idx = RadixIndexer()
        for event in self.events:
            assert idx.apply_event(event), event
        return idx


@pytest.fixture
def recorder() -> Callable[[int], Recorder]:
    """Makes a `Recorder` for a block size."""
    return Recorder
