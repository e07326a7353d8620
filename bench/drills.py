"""Fault drills (issue 16): what clients see when a worker dies, when workers restart one by one
under load, and when the frontend is driven far past its capacity. Loopback only, bounded in
count and time; results go to docs/reliability.md.

    uv run python bench/drills.py kill      # streams through out=dyn while a worker is SIGKILLed
    uv run python bench/drills.py rolling   # every worker replaced (SIGTERM) under load
    uv run python bench/drills.py overload  # 10x capacity against --max-concurrent-requests
    uv run python bench/drills.py control   # etcd stopped for 30 s, then NATS restarted, under load
    uv run python bench/drills.py soak      # streams for --minutes: errors, RSS and fd slopes

`kill` and `rolling` run echo_core workers on the SmolLM2 GGUF (its tokenizer; the engine echoes
the prompt's tokens at DYN_TOKEN_ECHO_DELAY_MS), so the numbers measure the serving layer, not a
model. `overload` runs echo_full in process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from _common import (
    default_model,
    free_port,
    http_get,
    model_listed,
    percentile,
    process_rss_mib,
    stop,
    wait_until,
)

CLI = [sys.executable, "-m", "dynamo.frontend.cli"]
PROMPT = "one two three four five six seven eight " * 40  # ~320 tokens to echo back


@dataclass
class StreamOutcome:
    tokens: int = 0
    error: str | None = None
    hung: bool = False
    longest_gap: float = 0.0


@dataclass
class Cluster:
    """etcd, NATS, echo_core workers and an `out=dyn` frontend on loopback."""

    env: dict[str, str]
    url: str
    etcd: Any
    nats: Any
    workers: list[subprocess.Popen] = field(default_factory=list)
    others: list[subprocess.Popen] = field(default_factory=list)

    def start_worker(self) -> subprocess.Popen:
        cmd = [*CLI, "in=dyn://drill.backend.generate", "out=echo_core", default_model()]
        proc = subprocess.Popen([*cmd, "--model-name", "drill"], env=self.env)
        self.workers.append(proc)
        return proc

    def instances(self) -> int:
        body = http_get(f"{self.url}/health")
        if body is None:
            return 0
        model = json.loads(body).get("models", {}).get("drill", {})
        return int(model.get("workers", 0))


@contextlib.contextmanager
def cluster(workers: int, frontend_flags: list[str], delay_ms: int) -> Iterator[Cluster]:
    from dynamo.testing import EtcdServer, NatsServer

    with EtcdServer() as etcd, NatsServer() as nats:
        env = {
            **os.environ,
            "ETCD_ENDPOINTS": etcd.url,
            "NATS_SERVER": nats.url,
            "DYN_LOG": "warn",
            "DYN_TOKEN_ECHO_DELAY_MS": str(delay_ms),
        }
        port = free_port()
        c = Cluster(env, f"http://127.0.0.1:{port}", etcd, nats)
        for _ in range(workers):
            c.start_worker()
        front = [*CLI, "in=http", "out=dyn", "--http-host", "127.0.0.1", "--http-port", str(port)]
        c.others.append(subprocess.Popen([*front, *frontend_flags], env=env))
        try:
            wait_until(lambda: model_listed(c.url, "drill"), c.others, "frontend", 180)
            wait_until(lambda: c.instances() == workers, c.workers, "workers", 180)
            yield c
        finally:
            stop([*c.workers, *c.others])


async def one_stream(
    session: aiohttp.ClientSession, url: str, max_tokens: int, hang_after: float
) -> StreamOutcome:
    """One streaming chat; a gap of `hang_after` seconds without a line counts as a hang."""
    body = {
        "model": "drill",
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
        out.error = type(e).__name__
    return out


def summarize(outcomes: list[StreamOutcome], max_tokens: int) -> dict[str, object]:
    full = sum(o.tokens == max_tokens and not o.error and not o.hung for o in outcomes)
    return {
        "requests": len(outcomes),
        "full_answers": full,
        "errors": Counter(o.error for o in outcomes if o.error),
        "hung": sum(o.hung for o in outcomes),
        "longest_pause_s": round(max((o.longest_gap for o in outcomes), default=0.0), 3),
    }


async def drill_kill(args: argparse.Namespace) -> None:
    """`--streams` streams at once; one worker is SIGKILLed `--kill-after` seconds in."""
    flags = ["--migration-limit", str(args.migration_limit)]
    with cluster(args.workers, flags, args.delay_ms) as c:
        timeout = aiohttp.ClientTimeout(total=None)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            tasks = [
                asyncio.create_task(one_stream(session, c.url, args.max_tokens, args.hang_after))
                for _ in range(args.streams)
            ]
            await asyncio.sleep(args.kill_after)
            victim = c.workers[0]
            victim.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            outcomes = await asyncio.gather(*tasks)
            print(
                json.dumps(
                    {
                        "drill": "kill",
                        **vars(args),
                        **summarize(outcomes, args.max_tokens),
                        "all_done_after_kill_s": round(time.monotonic() - killed, 2),
                    },
                    default=str,
                )
            )


async def drill_rolling(args: argparse.Namespace) -> None:
    """Clients loop on short streams while each worker is replaced: a new one starts, then the
    old one gets SIGTERM (a rolling restart)."""
    with cluster(args.workers, [], args.delay_ms) as c:
        stop_load = asyncio.Event()
        outcomes: list[StreamOutcome] = []

        async def client(session: aiohttp.ClientSession) -> None:
            while not stop_load.is_set():
                outcomes.append(await one_stream(session, c.url, 20, args.hang_after))

        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tasks = [asyncio.create_task(client(session)) for _ in range(args.clients)]
            exit_codes = []
            for old in list(c.workers):
                c.start_worker()
                await asyncio.to_thread(
                    wait_until, lambda: c.instances() == args.workers + 1, c.workers, "new", 180
                )
                old.send_signal(signal.SIGTERM)
                exit_codes.append(await asyncio.to_thread(old.wait, 60))
                c.workers.remove(old)
                await asyncio.to_thread(
                    wait_until, lambda: c.instances() == args.workers, c.workers, "left", 30
                )
            stop_load.set()
            await asyncio.gather(*tasks)
        print(
            json.dumps(
                {
                    "drill": "rolling",
                    **vars(args),
                    **summarize(outcomes, 20),
                    "worker_exit_codes": exit_codes,
                },
                default=str,
            )
        )


async def drill_overload(args: argparse.Namespace) -> None:
    """`--factor` x (capacity + queue) requests at once against `--max-concurrent-requests`."""
    flags = [
        "--max-concurrent-requests",
        str(args.capacity),
        "--queue-size",
        str(args.queue_size),
        "--queue-timeout",
        str(args.queue_timeout),
    ]
    proc, url = _start_echo_full(flags)
    try:
        statuses: Counter[int] = Counter()
        retry_after_missing = 0
        latencies: list[float] = []
        body = {"model": "drill", "messages": [{"role": "user", "content": "x" * 50}]}

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
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(one(session) for _ in range(total)))
        print(
            json.dumps(
                {
                    "drill": "overload",
                    **vars(args),
                    "requests": total,
                    "statuses": dict(sorted(statuses.items())),
                    "other_5xx": sum(n for s, n in statuses.items() if s >= 500 and s != 503),
                    "retry_after_missing": retry_after_missing,
                    "admitted_p50_s": round(percentile(latencies, 50), 3) if latencies else None,
                    "admitted_p99_s": round(percentile(latencies, 99), 3) if latencies else None,
                }
            )
        )
    finally:
        stop([proc])


async def drill_control(args: argparse.Namespace) -> None:
    """Clients loop on short streams; etcd is stopped for `--etcd-down` seconds and started
    again, then NATS is stopped for `--nats-down` seconds and started again."""
    with cluster(args.workers, [], args.delay_ms) as c:
        stop_load = asyncio.Event()
        log: list[tuple[float, StreamOutcome]] = []  # (finish time, outcome)

        async def client(session: aiohttp.ClientSession) -> None:
            while not stop_load.is_set():
                outcome = await one_stream(session, c.url, 20, args.hang_after)
                log.append((time.monotonic(), outcome))
                if outcome.error:
                    await asyncio.sleep(0.2)  # a failed request is answered at once: pace retries

        def phase(start: float, end: float) -> dict[str, object]:
            outcomes = [o for t, o in log if start <= t < end]
            failed = [t for t, o in log if start <= t < end and (o.error or o.hung)]
            return {
                **summarize(outcomes, 20),
                "last_failure_at_s": round(max(failed) - start, 2) if failed else None,
            }

        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tasks = [asyncio.create_task(client(session)) for _ in range(args.clients)]
            await asyncio.sleep(2)
            t0 = time.monotonic()
            await asyncio.to_thread(c.etcd.stop)
            await asyncio.sleep(args.etcd_down)
            await asyncio.to_thread(c.etcd.start)
            t1 = time.monotonic()
            await asyncio.sleep(args.settle)
            t2 = time.monotonic()
            await asyncio.to_thread(c.nats.stop)
            await asyncio.sleep(args.nats_down)
            await asyncio.to_thread(c.nats.start)
            t3 = time.monotonic()
            await asyncio.sleep(args.settle)
            t4 = time.monotonic()
            stop_load.set()
            await asyncio.gather(*tasks)
        recovered = [t for t, o in log if t >= t3 and not o.error and not o.hung]
        print(
            json.dumps(
                {
                    "drill": "control",
                    **vars(args),
                    "etcd_down": phase(t0, t1),
                    "after_etcd": phase(t1, t2),
                    "nats_down": phase(t2, t3),
                    "after_nats": {
                        **phase(t3, t4),
                        "first_success_after_restart_s": round(min(recovered) - t3, 2)
                        if recovered
                        else None,
                    },
                },
                default=str,
            )
        )


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


async def drill_soak(args: argparse.Namespace) -> None:
    """`--streams` clients loop on streams for `--minutes`; every process's RSS and open file
    descriptors are sampled, and their slopes over the run after a warm-up reported."""
    with cluster(args.workers, [], args.delay_ms) as c:
        procs = {"frontend": c.others[0]} | {f"worker{i}": w for i, w in enumerate(c.workers)}
        samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in procs}
        stop_load = asyncio.Event()
        outcomes: list[StreamOutcome] = []

        async def client(session: aiohttp.ClientSession) -> None:
            while not stop_load.is_set():
                outcomes.append(await one_stream(session, c.url, args.max_tokens, 30))

        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            tasks = [asyncio.create_task(client(session)) for _ in range(args.streams)]
            start = time.monotonic()
            while time.monotonic() - start < args.minutes * 60:
                await asyncio.sleep(args.sample)
                now = time.monotonic() - start
                for name, proc in procs.items():
                    samples[name].append((now, process_rss_mib(proc.pid), open_fds(proc.pid)))
            stop_load.set()
            await asyncio.gather(*tasks)
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
        print(
            json.dumps(
                {
                    "drill": "soak",
                    **vars(args),
                    **summarize(outcomes, args.max_tokens),
                    "processes": report,
                },
                default=str,
            )
        )


def _start_echo_full(flags: list[str]) -> tuple[subprocess.Popen, str]:
    """`dynamo-run in=http out=echo_full` (no model) on a free port, 10 ms a character."""
    port = free_port()
    cmd = [*CLI, "in=http", "out=echo_full", "--model-name", "drill"]
    cmd += ["--http-host", "127.0.0.1", "--http-port", str(port), *flags]
    env = {**os.environ, "DYN_LOG": "warn", "DYN_TOKEN_ECHO_DELAY_MS": "10"}
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_get(f"{url}/health") is not None, [proc], "dynamo-run", 120)
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="drill", required=True)
    kill = sub.add_parser("kill", help="SIGKILL a worker under streaming load")
    kill.add_argument("--workers", type=int, default=2)
    kill.add_argument("--streams", type=int, default=100)
    kill.add_argument("--max-tokens", type=int, default=200)
    kill.add_argument("--delay-ms", type=int, default=20, help="echo pace per token")
    kill.add_argument("--kill-after", type=float, default=1.5)
    kill.add_argument("--migration-limit", type=int, default=3)
    kill.add_argument("--hang-after", type=float, default=10.0)
    rolling = sub.add_parser("rolling", help="replace every worker under load")
    rolling.add_argument("--workers", type=int, default=2)
    rolling.add_argument("--clients", type=int, default=16)
    rolling.add_argument("--delay-ms", type=int, default=10)
    rolling.add_argument("--hang-after", type=float, default=10.0)
    overload = sub.add_parser("overload", help="10x capacity against admission control")
    overload.add_argument("--capacity", type=int, default=8)
    overload.add_argument("--queue-size", type=int, default=32)
    overload.add_argument("--queue-timeout", type=float, default=2.0)
    overload.add_argument("--factor", type=int, default=10)
    control = sub.add_parser("control", help="etcd down for a while, then NATS restarted")
    control.add_argument("--workers", type=int, default=2)
    control.add_argument("--clients", type=int, default=8)
    control.add_argument("--delay-ms", type=int, default=10)
    control.add_argument("--etcd-down", type=float, default=30.0)
    control.add_argument("--nats-down", type=float, default=3.0)
    control.add_argument("--settle", type=float, default=15.0, help="load after each restart")
    control.add_argument("--hang-after", type=float, default=10.0)
    soak = sub.add_parser("soak", help="streams for a while: errors, RSS and fd slopes")
    soak.add_argument("--workers", type=int, default=2)
    soak.add_argument("--streams", type=int, default=64)
    soak.add_argument("--max-tokens", type=int, default=50)
    soak.add_argument("--delay-ms", type=int, default=10)
    soak.add_argument("--minutes", type=float, default=30.0)
    soak.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    soak.add_argument("--warmup", type=float, default=0.2, help="share of the run left out")
    args = parser.parse_args()
    drills = {
        "kill": drill_kill,
        "rolling": drill_rolling,
        "overload": drill_overload,
        "control": drill_control,
        "soak": drill_soak,
    }
    drill = drills[args.drill]
    asyncio.run(drill(args))


if __name__ == "__main__":
    main()
