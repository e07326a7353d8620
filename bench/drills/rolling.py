"""`rolling`: every worker replaced, one at a time, under load (a rolling restart)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from .cluster import cluster
from .load import Load, http_session, summarize


async def drill_rolling(args: argparse.Namespace) -> dict[str, object]:
    """Clients loop on short streams while each worker is replaced: a new one starts, then the
    old one gets SIGTERM (a rolling restart)."""
    with cluster(args) as c:
        async with http_session() as session:
            load = Load(session, c.url, args, 20)
            exit_codes = []
            for old in list(c.workers):
                c.start_worker()
                await c.wait_instances(args.workers + 1, "new worker", 180)
                old.send_signal(signal.SIGTERM)
                exit_codes.append(await asyncio.to_thread(old.wait, 60))
                c.workers.remove(old)
                await c.wait_instances(args.workers, "old worker left", 30)
            outcomes = await load.stop()
        return {**summarize(outcomes, 20), "worker_exit_codes": exit_codes}
