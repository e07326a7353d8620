"""Request migration: a stream whose worker is lost resumes on another worker (upstream
`migration.rs`, `migration_limit`).

Sits between the detokenizing pipeline and the router, on token-level requests. It remembers the
tokens streamed so far; when the worker goes away mid-stream (`WorkerLostError`: killed, cut off,
or shut down without finishing) it sends the request again, now with those tokens appended to the
prompt and `max_tokens` (and `min_tokens`) reduced by as many, up to `limit` times. The client
sees one uninterrupted stream; the new worker prefills the longer prompt (with KV routing, on the
worker that holds most of it) and carries on. A request pinned to one worker
(`backend_instance_id`), or already stopped by the caller, is not migrated; nor is a worker's
own error, which would only happen again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from dynamo.llm.engine import AsyncEngine
from dynamo.llm.errors import WorkerLostError
from dynamo.runtime.context import Context

log = logging.getLogger(__name__)


class Migration:
    """An engine that retries `engine` on lost workers; see the module docstring."""

    def __init__(
        self, engine: AsyncEngine, limit: int, on_migrate: Callable[[], None] | None = None
    ) -> None:
        self.engine = engine
        self.limit = limit
        self.on_migrate = on_migrate

    async def generate(self, request: dict[str, Any], context: Context) -> AsyncIterator[Any]:
        left = self.limit if request.get("backend_instance_id") is None else 0
        generated: list[int] = []
        attempt = request
        while True:
            stream = self.engine.generate(attempt, context)
            try:
                async for out in stream:
                    if isinstance(out, dict) and out.get("token_ids"):
                        generated.extend(out["token_ids"])
                    yield out
                return
            except WorkerLostError as e:
                if left <= 0 or context.is_stopped():
                    raise
                left -= 1
                attempt = continuation(request, generated)
                if attempt is None:  # every token asked for had arrived: only the end was lost
                    yield {"token_ids": [], "finish_reason": "length"}
                    return
                log.warning(
                    "request %s: %s; resuming it on another worker after %d tokens "
                    "(%d migration(s) left)",
                    context.id(),
                    e.message,
                    len(generated),
                    left,
                )
                if self.on_migrate is not None:
                    self.on_migrate()
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()


def continuation(request: dict[str, Any], generated: list[int]) -> dict[str, Any] | None:
    """`request` resumed after `generated`: the tokens join the prompt and leave the budget.
    None when the budget is spent."""
    stop = dict(request.get("stop_conditions") or {})
    n = len(generated)
    if stop.get("max_tokens") is not None:
        stop["max_tokens"] -= n
        if stop["max_tokens"] <= 0:
            return None
    if stop.get("min_tokens"):
        stop["min_tokens"] = max(0, stop["min_tokens"] - n)
    resumed = {**request, "token_ids": [*request["token_ids"], *generated]}
    resumed["stop_conditions"] = stop
    resumed.pop("estimated_prefix_hit_num_blocks", None)
    return resumed


__all__ = ["Migration", "continuation"]
