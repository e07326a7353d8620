"""Fault drills (issue 16): what clients see when a worker dies or is scaled down, when workers
restart one by one under load, when etcd and NATS go away, when the frontend is driven far past
its capacity, over a long run, and when the HTTP API is fuzzed. Loopback only, bounded in count
and time; results go to docs/reliability.md.

    uv run python bench/drills.py kill      # streams through out=dyn while a worker is SIGKILLed
    uv run python bench/drills.py drain     # the same with SIGTERM: finish or hand over, exit 0
    uv run python bench/drills.py rolling   # every worker replaced (SIGTERM) under load
    uv run python bench/drills.py control   # etcd stopped for 30 s, then NATS restarted, under load
    uv run python bench/drills.py soak      # streams for --minutes: errors, RSS and fd slopes
    uv run python bench/drills.py overload  # 10x capacity against --max-concurrent-requests
    uv run python bench/drills.py fuzz      # schemathesis from /openapi.json: no 5xx, no hang

The `out=dyn` drills run echo_core workers on the SmolLM2 GGUF (its tokenizer; the engine echoes
the prompt's tokens at DYN_TOKEN_ECHO_DELAY_MS), so the numbers measure the serving layer, not a
model. `overload` runs echo_full in process, `fuzz` the mocker in process (every route, random
tokens out). Each drill is a function and a table row (`DRILLS`): its options and their defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    default_model,
    free_port,
    http_get,
    model_listed,
    percentile,
    process_rss_mib,
    start_dynamo_run,
    stop,
    wait_until,
)

CLI = [sys.executable, "-m", "dynamo.frontend.cli"]
PROMPT = "one two three four five six seven eight " * 40  # ~320 tokens to echo back
MODEL = "drill"


# -- the cluster and its clients ------------------------------------------------------------


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
    others: list[subprocess.Popen] = field(default_factory=list)  # the frontend

    def start_worker(self) -> subprocess.Popen:
        cmd = [*CLI, "in=dyn://drill.backend.generate", "out=echo_core", default_model()]
        proc = subprocess.Popen([*cmd, "--model-name", MODEL], env=self.env)
        self.workers.append(proc)
        return proc

    def instances(self) -> int:
        body = http_get(f"{self.url}/health")
        if body is None:
            return 0
        return int(json.loads(body).get("models", {}).get(MODEL, {}).get("workers", 0))

    async def wait_instances(self, count: int, what: str, timeout: float) -> None:  # noqa: ASYNC109
        await asyncio.to_thread(
            wait_until, lambda: self.instances() == count, self.workers, what, timeout
        )

    def metric(self, name: str) -> float:
        """A frontend counter for the drill's model (0 when absent)."""
        text = (http_get(f"{self.url}/metrics") or b"").decode()
        prefix = f'{name}{{model="{MODEL}"}} '
        return sum(
            float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)
        )


@contextlib.contextmanager
def cluster(args: argparse.Namespace, frontend_flags: Sequence[str] = ()) -> Iterator[Cluster]:
    """`args.workers` workers pacing tokens at `args.delay_ms`, with `args.worker_env` (NAME=VALUE
    strings, where the drill has them) in their environment."""
    from dynamo.testing import EtcdServer, NatsServer

    with EtcdServer() as etcd, NatsServer() as nats:
        env = {
            **os.environ,
            "ETCD_ENDPOINTS": etcd.url,
            "NATS_SERVER": nats.url,
            "DYN_LOG": "warn",
            "DYN_TOKEN_ECHO_DELAY_MS": str(args.delay_ms),
            **dict(kv.split("=", 1) for kv in getattr(args, "worker_env", None) or ()),
        }
        port = free_port()
        c = Cluster(env, f"http://127.0.0.1:{port}", etcd, nats)
        for _ in range(args.workers):
            c.start_worker()
        front = [*CLI, "in=http", "out=dyn", "--http-host", "127.0.0.1", "--http-port", str(port)]
        c.others.append(subprocess.Popen([*front, *frontend_flags], env=env))
        try:
            wait_until(lambda: model_listed(c.url, MODEL), c.others, "frontend", 180)
            wait_until(lambda: c.instances() == args.workers, c.workers, "workers", 180)
            yield c
        finally:
            stop([*c.workers, *c.others])


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


# -- the drills: each returns the fields of its JSON line -------------------------------------


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


def pin_model_names(schema: Any, names: list[str]) -> int:
    """Make every request field and path parameter that names a model an enum of the served
    ones, so that generated requests reach the pipeline instead of a 404 for an unknown model.
    Returns how many it pinned."""
    pinned = 0
    if isinstance(schema, dict):
        props = schema.get("properties")
        if isinstance(props, dict) and props.get("model", {}).get("type") == "string":
            props["model"] = {"type": "string", "enum": names}
            pinned += 1
        if schema.get("in") == "path" and schema.get("name") == "model_id":
            schema["schema"] = {"type": "string", "enum": names}
            pinned += 1
        return pinned + sum(pin_model_names(v, names) for v in schema.values())
    if isinstance(schema, list):
        return sum(pin_model_names(v, names) for v in schema)
    return 0


def fuzz_report(ndjson: Path) -> dict[str, object]:
    """What schemathesis's NDJSON report says the server answered: status classes, 5xx, the
    requests that got no answer (a hang past --request-timeout, or a dropped connection), and
    the slowest answer."""
    classes: Counter[str] = Counter()
    server_errors: list[str] = []
    no_answer = 0
    slowest = 0.0
    for line in ndjson.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished is None:
            continue
        for interaction in (finished.get("recorder") or {}).get("interactions", {}).values():
            response = interaction.get("response")
            if response is None:
                no_answer += 1
                continue
            status = response["status_code"]
            classes[f"{status // 100}xx"] += 1
            slowest = max(slowest, response.get("elapsed") or 0.0)
            if status >= 500:
                request = interaction["request"]
                body = request.get("body") or {}
                sent = base64.b64decode(body["$base64"]).decode(errors="replace") if body else ""
                server_errors.append(f"{status} {request['method']} {request['uri']} {sent[:300]}")
    return {
        "responses": sum(classes.values()),
        "status_classes": dict(sorted(classes.items())),
        "server_errors": len(server_errors),
        "server_error_examples": server_errors[:5],
        "no_answer": no_answer,
        "slowest_s": round(slowest, 3),
    }


def run_schemathesis(url: str, schema: Any, args: argparse.Namespace) -> dict[str, object]:
    """`st run` over `schema` against `url` for `--seconds`; its report, summarized."""
    with tempfile.TemporaryDirectory(prefix="dynamo-fuzz-") as tmp:
        path = Path(tmp) / "openapi.json"
        path.write_text(json.dumps(schema))
        st = Path(sys.executable).parent / "st"
        cmd = [str(st), "run", str(path), "--url", url, "--checks", "not_a_server_error"]
        cmd += ["--max-time", str(args.seconds), "--workers", str(args.clients)]
        cmd += ["--request-timeout", str(args.request_timeout), "--report", "ndjson"]
        cmd += ["--report-dir", tmp, "--no-color", "--suppress-health-check", "all"]
        if args.seed is not None:
            cmd += ["--seed", str(args.seed)]
        started = time.monotonic()
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 300)
        took = time.monotonic() - started
        reports = list(Path(tmp).glob("*.ndjson"))
        if not reports:
            raise RuntimeError(f"schemathesis wrote no report:\n{run.stdout}\n{run.stderr}")
        return {
            **fuzz_report(reports[0]),
            "schemathesis_exit_code": run.returncode,
            "seed": next(
                (ln.split()[-1] for ln in run.stdout.splitlines() if ln.startswith("Seed:")), None
            ),
            "schemathesis_summary": [
                ln.strip() for ln in run.stdout.splitlines() if "generated" in ln
            ][-1:],
            "took_s": round(took, 1),
        }


async def drill_fuzz(args: argparse.Namespace) -> dict[str, object]:
    """schemathesis generates requests from the served /openapi.json (model names pinned to the
    served one) for `--seconds`, every route, valid and invalid: the server must answer each
    within `--request-timeout`, never with a 5xx."""
    flags = ["--enable-anthropic-api", "--extra-engine-args", json.dumps({"speedup_ratio": 0})]
    proc, url = start_dynamo_run("mocker", default_model(), flags, model_name=MODEL)
    try:
        schema = json.loads(http_get(f"{url}/openapi.json", timeout=10) or b"{}")
        pinned = pin_model_names(schema, [MODEL])
        report = await asyncio.to_thread(run_schemathesis, url, schema, args)
        alive = proc.poll() is None
    finally:
        stop([proc])
    return {"model_fields_pinned": pinned, **report, "server_alive_after": alive}


# -- the runner -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    type: Callable[[str], Any]
    help: str
    nargs: str | None = None


OPTIONS = {
    "workers": Option(int, "echo_core workers behind the out=dyn frontend"),
    "streams": Option(int, "streams started together"),
    "clients": Option(int, "concurrent clients, each looping on requests"),
    "max_tokens": Option(int, "tokens a stream asks for"),
    "delay_ms": Option(int, "the echo engine's pace per token (or character)"),
    "hang_after": Option(float, "seconds without a line that count as a hung stream"),
    "after": Option(float, "seconds into the load when the worker is signalled"),
    "signal": Option(str, "the signal the worker gets: KILL or TERM"),
    "migration_limit": Option(int, "the frontend's --migration-limit"),
    "worker_env": Option(str, "NAME=VALUE in the workers' environment", nargs="*"),
    "etcd_down": Option(float, "seconds etcd is stopped"),
    "nats_down": Option(float, "seconds NATS is stopped"),
    "settle": Option(float, "seconds of load after each restart"),
    "minutes": Option(float, "length of the run"),
    "sample": Option(float, "seconds between samples"),
    "warmup": Option(float, "share of the run left out of the slopes"),
    "capacity": Option(int, "--max-concurrent-requests"),
    "queue_size": Option(int, "--queue-size"),
    "queue_timeout": Option(float, "--queue-timeout"),
    "factor": Option(int, "requests sent, as a multiple of capacity + queue"),
    "seconds": Option(int, "schemathesis's time budget"),
    "request_timeout": Option(float, "seconds an answer may take before it counts as a hang"),
    "seed": Option(int, "schemathesis's seed (default: a new one, printed in its output)"),
}


@dataclass(frozen=True)
class Drill:
    run: Callable[[argparse.Namespace], Awaitable[dict[str, object]]]
    help: str
    defaults: dict[str, object]


_LOSE = {"workers": 2, "streams": 100, "max_tokens": 200, "delay_ms": 20, "after": 1.5}
_LOSE |= {"migration_limit": 3, "hang_after": 10.0}
_LOAD = {"workers": 2, "delay_ms": 10, "hang_after": 10.0}

DRILLS = {
    "kill": Drill(
        drill_lose_worker, "SIGKILL a worker under streaming load", _LOSE | {"signal": "KILL"}
    ),
    "drain": Drill(
        drill_lose_worker,
        "SIGTERM a worker under streaming load: its streams finish or are handed over",
        _LOSE | {"signal": "TERM", "worker_env": ["DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT=1"]},
    ),
    "rolling": Drill(drill_rolling, "replace every worker under load", _LOAD | {"clients": 16}),
    "control": Drill(
        drill_control,
        "etcd down for a while, then NATS restarted, under load",
        _LOAD | {"clients": 8, "etcd_down": 30.0, "nats_down": 3.0, "settle": 15.0},
    ),
    "soak": Drill(
        drill_soak,
        "streams for a while: errors, RSS and fd slopes",
        _LOAD | {"clients": 64, "max_tokens": 50, "minutes": 30.0, "sample": 5.0, "warmup": 0.2},
    ),
    "overload": Drill(
        drill_overload,
        "10x capacity against admission control",
        {"capacity": 8, "queue_size": 32, "queue_timeout": 2.0, "factor": 10, "delay_ms": 10},
    ),
    "fuzz": Drill(
        drill_fuzz,
        "fuzz the HTTP API from its OpenAPI schema (schemathesis)",
        {"seconds": 300, "clients": 2, "request_timeout": 10.0, "seed": None},
    ),
}


def parser() -> argparse.ArgumentParser:
    """One subcommand per drill, with the options its table row names."""
    top = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="drill", required=True)
    for name, drill in DRILLS.items():
        p = sub.add_parser(name, help=drill.help, description=drill.run.__doc__)
        for option, default in drill.defaults.items():
            spec = OPTIONS[option]
            flag = "--" + option.replace("_", "-")
            p.add_argument(flag, type=spec.type, default=default, help=spec.help, nargs=spec.nargs)
    return top


def main() -> None:
    args = parser().parse_args()
    fields = asyncio.run(DRILLS[args.drill].run(args))
    print(json.dumps({"drill": args.drill, **vars(args), **fields}, default=str), flush=True)


if __name__ == "__main__":
    main()
