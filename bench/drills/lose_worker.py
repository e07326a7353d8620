"""`kill` and `drain`: a worker signalled while it streams; what its streams' clients see."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

from .cluster import cluster
from .load import http_session, one_stream, summarize


async def drill_lose_worker(args: argparse.Namespace) -> dict[str, object]:
    """`--streams` streams at once; `--after` seconds in, one worker gets `--signal`: KILL (it
    dies; its streams migrate) or TERM (it deregisters, finishes its streams within its grace
    period, hands the rest over to migration, and exits)."""
    flags = ["--migration-limit", str(args.migration_limit)]
    with cluster(args, flags) as c:
        async with http_session() as session:
            tasks = [
                asyncio.create_task(one_stream(session, c.url, args.max_tokens, args.hang_after))
                for _ in range(args.streams)
            ]
            await asyncio.sleep(args.after)
            victim = c.workers[0]
            victim.send_signal(signal.Signals[f"SIG{args.signal}"])
            signalled = time.monotonic()
            code = await asyncio.to_thread(victim.wait, 120)
            exited = time.monotonic() - signalled
            outcomes = await asyncio.gather(*tasks)
            return {
                **summarize(outcomes, args.max_tokens),
                "all_done_after_signal_s": round(time.monotonic() - signalled, 2),
                "worker_exit_code": code,
                "worker_exited_after_s": round(exited, 2),
                "migrations": c.metric("dynamo_frontend_model_migration_total"),
            }
