"""`overload`: far more requests than admission control lets in, all at once."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

import aiohttp
from _common import percentile, start_dynamo_run, stop

from .cluster import MODEL
from .load import http_session


async def drill_overload(args: argparse.Namespace) -> dict[str, object]:
    """`--factor` x (capacity + queue) requests at once against `--max-concurrent-requests`."""
    flags = ["--max-concurrent-requests", str(args.capacity), "--queue-size", str(args.queue_size)]
    flags += ["--queue-timeout", str(args.queue_timeout)]
    env = {"DYN_TOKEN_ECHO_DELAY_MS": str(args.delay_ms)}
    proc, url = start_dynamo_run("echo_full", None, flags, model_name=MODEL, env=env)
    try:
        statuses: Counter[int] = Counter()
        retry_after_missing = 0
        latencies: list[float] = []
        body = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 50}]}

        async def one(session: aiohttp.ClientSession) -> None:
            nonlocal retry_after_missing
            start = time.monotonic()
            async with session.post(f"{url}/v1/chat/completions", json=body) as resp:
                await resp.read()
                statuses[resp.status] += 1
                if resp.status in (429, 503) and "Retry-After" not in resp.headers:
                    retry_after_missing += 1
                if resp.status == 200:
                    latencies.append(time.monotonic() - start)

        total = args.factor * (args.capacity + args.queue_size)
        async with http_session() as session:
            await asyncio.gather(*(one(session) for _ in range(total)))
    finally:
        stop([proc])
    return {
        "requests": total,
        "statuses": dict(sorted(statuses.items())),
        "other_5xx": sum(n for s, n in statuses.items() if s >= 500 and s != 503),
        "retry_after_missing": retry_after_missing,
        "admitted_p50_s": round(percentile(latencies, 50), 3) if latencies else None,
        "admitted_p99_s": round(percentile(latencies, 99), 3) if latencies else None,
    }
