"""`until` and `wait_for`: they return the condition's first true value, accept plain and async
conditions, and fail naming what did not happen."""

from __future__ import annotations

import asyncio

import pytest

from dynamo.testing import until, wait_for


async def test_until_returns_the_first_true_value():
    seen: list[int] = []

    def grows() -> list[int] | None:
        seen.append(len(seen))
        return seen[:] if len(seen) == 3 else None

    assert await until(grows) == [0, 1, 2]


async def test_until_awaits_an_async_condition():
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, event.set)

    async def is_set() -> bool:
        return event.is_set()

    assert await until(is_set, within=5) is True


async def test_until_fails_naming_what_did_not_happen():
    with pytest.raises(AssertionError, match=r"the impossible did not happen within 0\.05 s"):
        await until(lambda: False, within=0.05, what="the impossible")


def test_wait_for_blocks_until_true_and_fails_naming_what():
    values = iter([0, "", "done"])
    assert wait_for(lambda: next(values), interval=0.001) == "done"
    with pytest.raises(AssertionError, match=r"nothing did not happen within 0\.05 s"):
        wait_for(lambda: None, within=0.05, what="nothing", interval=0.01)
