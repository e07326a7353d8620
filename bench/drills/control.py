"""`control`: etcd stopped and started again, then NATS, under load; each phase's failures."""

from __future__ import annotations

import argparse
import asyncio
import time

from .cluster import cluster
from .load import Load, http_session, summarize


async def drill_control(args: argparse.Namespace) -> dict[str, object]:
    """Clients loop on short streams; etcd is stopped for `--etcd-down` seconds and started
    again, then NATS is stopped for `--nats-down` seconds and started again."""
    with cluster(args) as c:
        async with http_session() as session:
            load = Load(session, c.url, args, 20, pace=0.2)
            await asyncio.sleep(2)
            marks = [time.monotonic()]
            for server, down in ((c.etcd, args.etcd_down), (c.nats, args.nats_down)):
                await asyncio.to_thread(server.stop)
                await asyncio.sleep(down)
                await asyncio.to_thread(server.start)
                marks.append(time.monotonic())
                await asyncio.sleep(args.settle)
                marks.append(time.monotonic())
            await load.stop()
    log = load.log

    def phase(start: float, end: float) -> dict[str, object]:
        failed = [t for t, o in log if start <= t < end and (o.error or o.hung)]
        return {
            **summarize([o for t, o in log if start <= t < end], 20),
            "last_failure_at_s": round(max(failed) - start, 2) if failed else None,
        }

    recovered = [t for t, o in log if t >= marks[3] and not o.error and not o.hung]
    return {
        "etcd_stopped": phase(marks[0], marks[1]),
        "after_etcd": phase(marks[1], marks[2]),
        "nats_stopped": phase(marks[2], marks[3]),
        "after_nats": {
            **phase(marks[3], marks[4]),
            "first_success_after_restart_s": round(min(recovered) - marks[3], 2)
            if recovered
            else None,
        },
    }
