"""The drills' clients: streaming chats that note errors and hangs, a looping load, a summary."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from .cluster import MODEL

PROMPT = "one two three four five six seven eight " * 40  # ~320 tokens to echo back


@dataclass
class StreamOutcome:
    tokens: int = 0
    error: str | None = None
    hung: bool = False
    longest_gap: float = 0.0


@contextlib.asynccontextmanager
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session with no total timeout and no connection limit (the drills bound their
    own streams)."""
    timeout = aiohttp.ClientTimeout(total=None)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        yield session


async def one_stream(
    session: aiohttp.ClientSession, url: str, max_tokens: int, hang_after: float
) -> StreamOutcome:
    """One streaming chat; a gap of `hang_after` seconds without a line counts as a hang."""
    body = {
        "model": MODEL,
        "stream": True,
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": PROMPT}],
    }
    out = StreamOutcome()
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body) as resp:
            if resp.status != 200:
                out.error = f"HTTP {resp.status}"
                return out
            last = time.monotonic()
            while True:
                try:
                    raw = await asyncio.wait_for(resp.content.readline(), hang_after)
                except TimeoutError:
                    out.hung = True
                    return out
                if not raw:
                    return out
                now = time.monotonic()
                out.longest_gap = max(out.longest_gap, now - last)
                last = now
                line = raw.strip()
                if line.startswith(b"event: error"):
                    out.error = "error event"
                elif line.startswith(b"data: {"):
                    usage = json.loads(line[6:]).get("usage")
                    if usage:
                        out.tokens = usage["completion_tokens"]
    except aiohttp.ClientError as e:
        # The message too (e.g. which errno a dropped connection had), cut to what groups well.
        out.error = f"{type(e).__name__}: {e}"[:80]
    return out


class Load:
    """`clients` clients, each looping on `max_tokens`-token streams until `stop()`; every
    outcome is logged with the time it finished. A failed request is retried after `pace`
    seconds (a failure comes back at once; without a pause the loop would only spin)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        args: argparse.Namespace,
        max_tokens: int,
        pace: float = 0.0,
    ):
        self.log: list[tuple[float, StreamOutcome]] = []
        self._stop = asyncio.Event()

        async def client() -> None:
            while not self._stop.is_set():
                outcome = await one_stream(session, url, max_tokens, args.hang_after)
                self.log.append((time.monotonic(), outcome))
                if outcome.error and pace:
                    await asyncio.sleep(pace)

        self._tasks = [asyncio.create_task(client()) for _ in range(args.clients)]

    async def stop(self) -> list[StreamOutcome]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return [o for _, o in self.log]


def summarize(outcomes: list[StreamOutcome], max_tokens: int) -> dict[str, object]:
    full = sum(o.tokens == max_tokens and not o.error and not o.hung for o in outcomes)
    return {
        "requests": len(outcomes),
        "full_answers": full,
        "errors": Counter(o.error for o in outcomes if o.error),
        "hung": sum(o.hung for o in outcomes),
        "longest_pause_s": round(max((o.longest_gap for o in outcomes), default=0.0), 3),
    }
