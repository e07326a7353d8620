"""Request migration against a scripted token engine: what the next worker is asked, and when."""

from __future__ import annotations

from typing import Any

import pytest

from dynamo.llm.errors import EngineFailedError, WorkerLostError
from dynamo.llm.migration import Migration, continuation
from dynamo.runtime.context import Context

REQUEST = {
    "token_ids": [1, 2, 3],
    "stop_conditions": {"max_tokens": 10, "min_tokens": 4},
    "estimated_prefix_hit_num_blocks": 2,
}


class Workers:
    """Each call is one worker: it streams its script's tokens, then fails as told (or ends)."""

    def __init__(self, *scripts: tuple[list[int], Exception | None]):
        self.scripts = list(scripts)
        self.requests: list[dict[str, Any]] = []

    async def generate(self, request: dict[str, Any], context: Context):
        self.requests.append(request)
        tokens, failure = self.scripts.pop(0)
        for t in tokens:
            yield {"token_ids": [t]}
        if failure is not None:
            raise failure
        yield {"token_ids": [], "finish_reason": "length"}


async def run(engine: Migration, request: dict[str, Any] = REQUEST) -> list[int]:
    out: list[int] = []
    async for item in engine.generate(request, Context()):
        out.extend(item["token_ids"])
    return out


async def test_lost_worker_is_resumed_with_the_tokens_so_far():
    workers = Workers(([7, 8, 9], WorkerLostError("worker 1 stopped responding")), ([10, 11], None))
    migrated = []
    engine = Migration(workers, limit=1, on_migrate=lambda: migrated.append(1))
    assert await run(engine) == [7, 8, 9, 10, 11]
    second = workers.requests[1]
    assert second["token_ids"] == [1, 2, 3, 7, 8, 9]
    assert second["stop_conditions"] == {"max_tokens": 7, "min_tokens": 1}
    assert "estimated_prefix_hit_num_blocks" not in second  # the router estimates afresh
    assert REQUEST["token_ids"] == [1, 2, 3]  # the caller's request is left alone
    assert migrated == [1]


async def test_limit_is_a_number_of_migrations():
    lost = WorkerLostError("gone")
    workers = Workers(([7], lost), ([8], lost), ([9], lost))
    with pytest.raises(WorkerLostError):
        await run(Migration(workers, limit=2))
    assert [r["token_ids"] for r in workers.requests] == [[1, 2, 3], [1, 2, 3, 7], [1, 2, 3, 7, 8]]


async def test_no_migration_without_a_limit_for_pinned_requests_or_other_errors():
    with pytest.raises(WorkerLostError):
        await run(Migration(Workers(([7], WorkerLostError("gone"))), limit=0))
    pinned = {**REQUEST, "backend_instance_id": 5}
    with pytest.raises(WorkerLostError):
        await run(Migration(Workers(([7], WorkerLostError("gone"))), limit=3), pinned)
    # A worker's own failure would happen again elsewhere: it is not a lost worker.
    with pytest.raises(EngineFailedError):
        await run(Migration(Workers(([7], EngineFailedError("bug"))), limit=3))


async def test_a_stopped_request_is_not_migrated():
    workers = Workers(([7], WorkerLostError("gone")), ([8], None))
    context = Context()
    engine = Migration(workers, limit=1)
    with pytest.raises(WorkerLostError):
        async for _ in engine.generate(REQUEST, context):
            context.stop_generating()
    assert len(workers.requests) == 1


async def test_a_loss_after_the_last_token_just_ends_the_stream():
    request = {"token_ids": [1], "stop_conditions": {"max_tokens": 2}}
    workers = Workers(([7, 8], WorkerLostError("gone before its final frame")))
    out = [item async for item in Migration(workers, limit=1).generate(request, Context())]
    assert out[-1] == {"token_ids": [], "finish_reason": "length"}
    assert len(workers.requests) == 1


def test_continuation_without_a_token_budget():
    assert continuation({"token_ids": [1]}, [2, 3]) == {
        "token_ids": [1, 2, 3],
        "stop_conditions": {},
    }
