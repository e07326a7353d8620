"""Load generator for the OpenAI frontend: streams, TTFT, inter-token latency, server CPU per token.

Starts the server under test itself (or targets `--url` with `--server-pid`), runs `--requests`
streaming chat requests with at most `--concurrency` in flight, and prints one JSON object per
measurement. Wall-clock numbers on a shared 2-core machine swing 2x; the steadier figure is the
server's own CPU time (from /proc, the frontend process and its children) divided by the tokens
it streamed.

`--shapes` measures several servers in one run, alternating them round by round (`--rounds`) so
that the machine's load hits all of them alike, then prints each one's medians:

- `local`: ours in one process, `in=http out=ENGINE` (the engine's CPU counted);
- `split-tcp`, `split-nats`: ours split, `in=http out=dyn` + an `out=ENGINE` worker (etcd,
  NATS) on that request plane, the frontend alone counted; `split-tcp-w2` (any `-wN`): the
  frontend as N HTTP processes (`--http-workers N`), all of them counted;
- `upstream`: upstream Dynamo's frontend and mocker (`--upstream PYTHON`, bench/upstream.py),
  its frontend counted.

`--before DIR` (a tree of the repository's `packages`, e.g. from `git archive`) measures each of
our shapes from that tree too, as `before:SHAPE`. `--speedup` is the mocker's (1000: the
frontend is the bottleneck; 1: upstream's realistic pacing).

    uv run python bench/frontend.py --engine echo_core --concurrency 64 --requests 512
    uv run python bench/frontend.py --engine mocker --shapes split-tcp,split-nats,split-tcp-w2 \\
        --upstream /path/to/upstream-venv/bin/python --rounds 3
    uv run python bench/frontend.py --engine echo_core --shapes local --before /tmp/before --rounds 3
    uv run python bench/frontend.py --url http://127.0.0.1:8000 --server-pid 1234 --model smollm2

(The older spellings still work: `--split [--request-plane nats,tcp]` and `--upstream PYTHON`
alone.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from _common import (
    StreamStats,
    default_model,
    percentile,
    process_rss_mib,
    process_tree,
    process_tree_cpu_seconds,
    split_stack,
    start_dynamo_run,
    stop,
    stream_chat,
)

#: The mocker's speedup for the CPU comparison: its simulated step times shrink to nothing, so
#: the frontend is the bottleneck (upstream's 1.6.1 mocker treats 0 as 1, hence not 0).
MOCKER_SPEEDUP = 1000.0


async def one_request(
    session: aiohttp.ClientSession, url: str, body: dict, results: StreamStats
) -> None:
    try:
        await stream_chat(session, url, body, results)
        results.requests += 1
    except aiohttp.ClientError:
        results.errors += 1


async def run_load(
    url: str, model: str, concurrency: int, requests: int, max_tokens: int, duration: float
) -> tuple[StreamStats, float]:
    body = {
        "model": model,
        "stream": True,
        "max_completion_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Write a long story about a robot. " * 24}],
        # Root level (upstream's CommonExt): upstream 1.6.1 rejects `nvext.ignore_eos`.
        "ignore_eos": True,
    }
    results = StreamStats()
    semaphore = asyncio.Semaphore(concurrency)
    deadline = time.perf_counter() + duration
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=600)
    ) as session:

        async def bounded() -> None:
            async with semaphore:
                if time.perf_counter() < deadline:
                    await one_request(session, url, body, results)

        start = time.perf_counter()
        await asyncio.gather(*(bounded() for _ in range(requests)))
        return results, time.perf_counter() - start


@dataclass(frozen=True)
class Shape:
    """One server to measure: `kind` local, split or upstream; the split request plane; the
    number of HTTP processes; and the tree of `packages` it runs from (None: this one)."""

    kind: str
    plane: str | None = None
    http_workers: int = 1
    tree: str | None = None

    @classmethod
    def parse(cls, text: str) -> Shape:
        kind, *rest = text.split("-")
        if kind not in ("local", "split", "upstream"):
            raise SystemExit(f"--shapes: unknown shape '{text}' (local, split-tcp, upstream, ...)")
        plane, workers = None, 1
        for part in rest:
            if part in ("tcp", "nats"):
                plane = part
            elif part.startswith("w") and part[1:].isdigit():
                workers = int(part[1:])
            else:
                raise SystemExit(f"--shapes: '{part}' in '{text}' is not tcp, nats or wN")
        return cls(kind, plane, workers)

    @property
    def label(self) -> str:
        name = self.kind + (f"-{self.plane}" if self.plane else "")
        name += f"-w{self.http_workers}" if self.http_workers > 1 else ""
        return f"before:{name}" if self.tree else name


def _tree_env(tree: str | None) -> dict[str, str]:
    """Environment that runs our processes from `tree`'s `packages` instead of this checkout."""
    if not tree:
        return {}
    sources = sorted(str(p) for p in Path(tree, "packages").glob("*/src"))
    return {"PYTHONPATH": os.pathsep.join(sources)}


@contextlib.contextmanager
def server_under_test(
    args: argparse.Namespace, extra: list[str], shape: Shape
) -> Iterator[tuple[str, int | None, str, str]]:
    """Start `shape`; yield its URL, the pid to measure (with its children), the model name and
    a label. In the split and upstream shapes the pid is the frontend's: the engine's CPU is not
    counted. `--url` measures a server that is already running."""
    if args.url:
        yield args.url, args.server_pid, args.model, "external"
        return
    model_path = args.model_path or default_model()
    env = _tree_env(shape.tree)
    if shape.kind == "upstream":
        import upstream

        if not args.upstream:
            raise SystemExit("the upstream shape needs --upstream PYTHON")
        with upstream.upstream_stack(
            args.upstream, model_path=model_path, speedup_ratio=args.speedup
        ) as stack:
            yield stack.url, stack.frontend.pid, stack.model, f"upstream-{stack.version}:mocker"
    elif shape.kind == "split":
        engine_args = {"speedup_ratio": args.speedup} if args.engine == "mocker" else None
        frontend_args = (
            ["--http-workers", str(shape.http_workers)] if shape.http_workers > 1 else []
        )
        with split_stack(
            args.engine,
            model_path,
            extra_engine_args=engine_args,
            request_plane=shape.plane,
            frontend_args=frontend_args,
            env=env,
        ) as (url, proc):
            yield url, proc.pid, "bench", f"{shape.label}:{args.engine}"
    else:
        proc: subprocess.Popen | None = None
        env["DYN_TOKEN_ECHO_DELAY_MS"] = os.environ.get("DYN_TOKEN_ECHO_DELAY_MS", "0")
        if args.engine == "mocker":
            extra = [*extra, "--extra-engine-args", json.dumps({"speedup_ratio": args.speedup})]
        try:
            proc, url = start_dynamo_run(args.engine, model_path, extra, env=env)
            yield url, proc.pid, "bench", f"{shape.label}:{args.engine}"
        finally:
            if proc is not None:
                stop([proc], grace=30)


def shapes_of(args: argparse.Namespace) -> list[Shape]:
    """The shapes to measure, each round, in order (`--before` adds each of ours from there)."""
    if args.shapes:
        shapes = [Shape.parse(s) for s in args.shapes.split(",")]
    elif args.upstream:
        shapes = [Shape("upstream")]
    elif args.split:
        planes = args.request_plane.split(",") if args.request_plane else [None]
        shapes = [Shape("split", plane) for plane in planes]
    else:
        shapes = [Shape("local")]
    if args.before:
        shapes += [
            Shape(s.kind, s.plane, s.http_workers, args.before)
            for s in shapes
            if s.kind != "upstream"
        ]
    return shapes


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", help="target an already running server instead of starting one")
    p.add_argument(
        "--server-pid", type=int, help="with --url: the server's pid, for CPU accounting"
    )
    p.add_argument("--model", default="bench", help="model name to request (with --url)")
    p.add_argument("--engine", default="echo_core")
    p.add_argument("--model-path", default=None)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--requests", type=int, default=256)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument(
        "--duration",
        type=float,
        default=300.0,
        help="stop starting requests after this many seconds",
    )
    p.add_argument(
        "--warmup", type=int, default=8, help="requests sent (and ignored) before measuring"
    )
    p.add_argument(
        "--shapes",
        help="servers to measure in turn each round: local, split-tcp, split-nats, "
        "split-tcp-wN (N HTTP processes), upstream",
    )
    p.add_argument(
        "--split",
        action="store_true",
        help="run --engine as a separate worker (etcd, NATS) and measure the frontend alone",
    )
    p.add_argument(
        "--upstream",
        metavar="PYTHON",
        help="the python of a virtualenv holding upstream ai-dynamo 1.6.1: its frontend and "
        "mocker are the `upstream` shape (alone, without --shapes: the only one measured)",
    )
    p.add_argument(
        "--request-plane",
        help="with --split: the worker's request plane, or several (nats,tcp) measured in turn",
    )
    p.add_argument(
        "--speedup",
        type=float,
        default=MOCKER_SPEEDUP,
        help=f"the mocker's speedup_ratio, ours and upstream's (default {MOCKER_SPEEDUP:g}; 1 "
        "is realistic pacing)",
    )
    p.add_argument("--before", metavar="DIR", help="also measure our shapes from DIR/packages")
    p.add_argument("--rounds", type=int, default=1, help="times to measure each shape")
    args, extra = p.parse_known_args()
    if args.speedup <= 0:
        p.error("--speedup must be above 0 (upstream's mocker treats 0 as 1)")
    shapes = shapes_of(args)
    reports: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for shape in shapes:
            report = measure(args, extra, shape)
            reports.setdefault(report["server"], []).append(report)
    if args.rounds > 1 or len(shapes) > 1:
        for label, runs in reports.items():
            print(json.dumps({"server": label, "runs": len(runs), **medians(runs)}))


def medians(runs: list[dict]) -> dict[str, float]:
    """The median of each figure over the runs of one shape."""
    keys = (
        "requests_per_s",
        "output_tokens_per_s",
        "ttft_p50_ms",
        "itl_p50_ms",
        "itl_p99_ms",
        "server_cpu_us_per_token",
        "engine_cpu_us_per_token",
        "client_cpu_us_per_token",
    )
    return {
        f"median_{key}": round(statistics.median(r[key] for r in runs), 2)
        for key in keys
        if all(key in r for r in runs)
    }


def engine_pids(frontend: int | None) -> list[int]:
    """The engine workers this run started beside the frontend (ours: `in=dyn://...`;
    upstream's: `dynamo.mocker`), so their CPU per token is reported apart from the frontend's:
    the whole system is on the same cores, and a slow worker caps requests/s as surely as a slow
    frontend. Empty when the engine runs inside the frontend (`local`) or with `--url`."""
    found = []
    for pid in process_tree(os.getpid())[1:]:
        if pid == frontend:
            continue
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if any(a.startswith(b"in=dyn://") or a == b"dynamo.mocker" for a in argv):
                found.append(pid)
    return found


def measure(args: argparse.Namespace, extra: list[str], shape: Shape) -> dict:
    """Start the server under test, warm it up, load it, print and return one JSON report."""
    with server_under_test(args, extra, shape) as (url, pid, model, label):
        endpoint = f"{url}/v1/chat/completions"
        asyncio.run(
            run_load(
                endpoint,
                model,
                min(args.warmup, args.concurrency),
                args.warmup,
                args.max_tokens,
                60,
            )
        )
        engines = engine_pids(pid)
        cpu0 = process_tree_cpu_seconds(pid) if pid else None
        engine_cpu0 = sum(process_tree_cpu_seconds(each) for each in engines)
        client_cpu0 = time.process_time()
        results, wall = asyncio.run(
            run_load(
                endpoint, model, args.concurrency, args.requests, args.max_tokens, args.duration
            )
        )
        client_cpu = time.process_time() - client_cpu0
        engine_cpu = sum(process_tree_cpu_seconds(each) for each in engines) - engine_cpu0
        cpu = process_tree_cpu_seconds(pid) - cpu0 if pid and cpu0 is not None else None
        rss = sum(process_rss_mib(each) for each in process_tree(pid)) if pid else None
    report = {
        "server": label,
        "concurrency": args.concurrency,
        "requests": results.requests,
        "errors": results.errors,
        "wall_s": round(wall, 3),
        "requests_per_s": round(results.requests / wall, 2),
        "output_tokens_per_s": round(results.tokens / wall, 1),
        "ttft_p50_ms": round(percentile(results.ttft, 50) * 1000, 2),
        "ttft_p99_ms": round(percentile(results.ttft, 99) * 1000, 2),
        "itl_p50_ms": round(percentile(results.itl, 50) * 1000, 3),
        "itl_p99_ms": round(percentile(results.itl, 99) * 1000, 3),
        "streamed_tokens": results.tokens,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if cpu is not None and results.tokens:
        report["server_cpu_s"] = round(cpu, 3)
        report["server_cpu_us_per_token"] = round(cpu / results.tokens * 1e6, 1)
    if results.tokens:
        report["client_cpu_us_per_token"] = round(client_cpu / results.tokens * 1e6, 1)
        if engines:
            report["engine_cpu_us_per_token"] = round(engine_cpu / results.tokens * 1e6, 1)
    if rss is not None:
        report["server_rss_mib"] = round(rss)
    if results.itl:
        report["itl_mean_ms"] = round(statistics.fmean(results.itl) * 1000, 3)
    print(json.dumps(report), flush=True)
    return report


if __name__ == "__main__":
    main()
