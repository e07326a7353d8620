"""`soak`: a long steady load; errors, and whether any process's memory or fds keep growing."""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from _common import process_rss_mib

from .cluster import cluster
from .load import Load, http_session, summarize


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, per minute."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return 60.0 * cov / var if var else 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def drill_soak(args: argparse.Namespace) -> dict[str, object]:
    """`--clients` clients loop on streams for `--minutes`; every process's RSS and open file
    descriptors are sampled, and their slopes over the run after a warm-up reported."""
    with cluster(args) as c:
        procs = {"frontend": c.others[0]} | {f"worker{i}": w for i, w in enumerate(c.workers)}
        samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in procs}
        async with http_session() as session:
            load = Load(session, c.url, args, args.max_tokens)
            start = time.monotonic()
            while time.monotonic() - start < args.minutes * 60:
                await asyncio.sleep(args.sample)
                now = time.monotonic() - start
                for name, proc in procs.items():
                    samples[name].append((now, process_rss_mib(proc.pid), open_fds(proc.pid)))
            outcomes = await load.stop()
    warm = args.minutes * 60 * args.warmup
    report = {}
    for name, rows in samples.items():
        steady = [r for r in rows if r[0] >= warm]
        report[name] = {
            "rss_mib_first": round(steady[0][1], 1) if steady else None,
            "rss_mib_last": round(steady[-1][1], 1) if steady else None,
            "rss_mib_per_min": round(slope_per_minute([(t, m) for t, m, _ in steady]), 3),
            "fds_first": steady[0][2] if steady else None,
            "fds_last": steady[-1][2] if steady else None,
            "fds_per_min": round(slope_per_minute([(t, f) for t, _, f in steady]), 3),
        }
    return {**summarize(outcomes, args.max_tokens), "processes": report}
