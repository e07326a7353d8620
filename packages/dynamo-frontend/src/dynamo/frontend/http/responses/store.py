"""Stored responses (`store: true`), for `previous_response_id` and `GET /v1/responses/{id}`.

Kept in this process's memory only, with bounds and an expiry: at most `max_entries` responses
and `max_bytes` of them (their JSON), the least recently used dropped first, and none older than
`ttl_seconds`. A frontend restart forgets them all, and several frontends behind a load balancer
do not share them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from dynamo.llm.errors import ResponseNotFoundError

DEFAULT_MAX_ENTRIES = 1000
DEFAULT_TTL_SECONDS = 3600.0
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass
class StoredResponse:
    response: dict[str, Any]
    #: The chat messages of the whole conversation, this response's answer included (without
    #: instructions, which OpenAI does not carry to the next turn).
    messages: list[dict[str, Any]]
    expires_at: float
    size: int = 0
    #: The request's own input, as items with ids (`GET /v1/responses/{id}/input_items`).
    input_items: list[dict[str, Any]] = field(default_factory=list)


class ResponseStore:
    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.max_bytes = max_bytes
        self._bytes = 0
        self._clock = clock
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()

    def put(
        self,
        response: dict[str, Any],
        messages: list[dict[str, Any]],
        input_items: list[dict[str, Any]] | None = None,
    ) -> None:
        self._expire()
        items = input_items or []
        size = sum(len(orjson.dumps(part)) for part in (response, messages, items))
        self._drop(response["id"])
        self._entries[response["id"]] = StoredResponse(
            response, messages, self._clock() + self.ttl_seconds, size, items
        )
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def get(self, response_id: str, param: str | None = None) -> StoredResponse:
        self._expire()
        entry = self._entries.get(response_id)
        if entry is None:
            raise ResponseNotFoundError(response_id, param)
        self._entries.move_to_end(response_id)
        return entry

    def delete(self, response_id: str) -> None:
        if not self._drop(response_id):
            raise ResponseNotFoundError(response_id)

    def _drop(self, response_id: str) -> bool:
        entry = self._entries.pop(response_id, None)
        if entry is None:
            return False
        self._bytes -= entry.size
        return True

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)

    def _expire(self) -> None:
        now = self._clock()
        expired = [key for key, entry in self._entries.items() if entry.expires_at <= now]
        for key in expired:
            self._drop(key)
