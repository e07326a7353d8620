"""Load generator for the OpenAI frontend: streams, TTFT, inter-token latency, server CPU per token.

Starts `dynamo-run in=http out=<engine> MODEL` itself (or targets `--url` with `--server-pid`),
runs `--requests` streaming chat requests with at most `--concurrency` in flight, and prints one
JSON object. Wall-clock numbers on a shared 2-core machine swing 2x; the steadier figure is the
server's own CPU time (from /proc) divided by the tokens it streamed.

`--split` runs the engine as its own worker behind `in=http out=dyn` (etcd and NATS) and counts
the frontend process alone (`--request-plane nats,tcp --rounds 2` measures each plane in turn,
back to back in one run, one JSON line each); `--upstream PYTHON` runs upstream Dynamo's frontend and mocker
(bench/upstream.py) the same way, so the two frontends' CPU per token compare like for like.

    uv run python bench/frontend.py --engine echo_core --concurrency 64 --requests 512
    uv run python bench/frontend.py --split --engine mocker --concurrency 64 --requests 512
    uv run python bench/frontend.py --split --engine mocker --request-plane nats,tcp --rounds 2
    uv run python bench/frontend.py --upstream /path/to/upstream-venv/bin/python --requests 512
    uv run python bench/frontend.py --url http://127.0.0.1:8000 --server-pid 1234 --model smollm2
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

import aiohttp
from _common import (
    StreamStats,
    default_model,
    percentile,
    process_cpu_seconds,
    process_rss_mib,
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


@contextlib.contextmanager
def server_under_test(
    args: argparse.Namespace, extra: list[str], plane: str | None = None
) -> Iterator[tuple[str, int | None, str, str]]:
    """Start what `args` asks for; yield its URL, the pid to measure, the model name, a label.

    Ours in one process (`in=http out=ENGINE`, the default), ours split (`--split`: frontend
    and an `out=ENGINE` worker over etcd and NATS), upstream's frontend and mocker
    (`--upstream PYTHON`), or a server that is already running (`--url`). In the split and
    upstream shapes the pid is the frontend's: the engine's CPU is not counted. `plane`: the
    split worker's request plane.
    """
    if args.url:
        yield args.url, args.server_pid, args.model, "external"
        return
    model_path = args.model_path or default_model()
    if args.upstream:
        import upstream

        with upstream.upstream_stack(
            args.upstream, model_path=model_path, speedup_ratio=MOCKER_SPEEDUP
        ) as stack:
            yield stack.url, stack.frontend.pid, stack.model, f"upstream-{stack.version}:mocker"
    elif args.split:
        engine_args = {"speedup_ratio": MOCKER_SPEEDUP} if args.engine == "mocker" else None
        with split_stack(
            args.engine, model_path, extra_engine_args=engine_args, request_plane=plane
        ) as (url, proc):
            yield url, proc.pid, "bench", f"split:{args.engine}:{plane or 'default'}"
    else:
        proc: subprocess.Popen | None = None
        env = {"DYN_TOKEN_ECHO_DELAY_MS": os.environ.get("DYN_TOKEN_ECHO_DELAY_MS", "0")}
        try:
            proc, url = start_dynamo_run(args.engine, model_path, extra, env=env)
            yield url, proc.pid, "bench", args.engine
        finally:
            if proc is not None:
                stop([proc], grace=30)


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
        "--split",
        action="store_true",
        help="run --engine as a separate worker (etcd, NATS) and measure the frontend alone",
    )
    p.add_argument(
        "--upstream",
        metavar="PYTHON",
        help="the python of a virtualenv holding upstream ai-dynamo 1.6.1: run its frontend "
        f"and mocker (speedup {MOCKER_SPEEDUP:g}) instead of ours and measure its frontend",
    )
    p.add_argument(
        "--request-plane",
        help="with --split: the worker's request plane, or several (nats,tcp) measured in turn",
    )
    p.add_argument("--rounds", type=int, default=1, help="times to measure each request plane")
    args, extra = p.parse_known_args()
    planes: list[str | None] = args.request_plane.split(",") if args.request_plane else [None]
    for _ in range(args.rounds):
        for plane in planes:
            measure(args, extra, plane)


def measure(args: argparse.Namespace, extra: list[str], plane: str | None) -> None:
    """Start the server under test, warm it up, load it, and print one JSON report."""
    with server_under_test(args, extra, plane) as (url, pid, model, label):
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
        cpu0 = process_cpu_seconds(pid) if pid else None
        results, wall = asyncio.run(
            run_load(
                endpoint, model, args.concurrency, args.requests, args.max_tokens, args.duration
            )
        )
        cpu = process_cpu_seconds(pid) - cpu0 if pid else None
        rss = process_rss_mib(pid) if pid else None
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
    }
    if cpu is not None and results.tokens:
        report["server_cpu_s"] = round(cpu, 3)
        report["server_cpu_us_per_token"] = round(cpu / results.tokens * 1e6, 1)
    if rss is not None:
        report["server_rss_mib"] = round(rss)
    if results.itl:
        report["itl_mean_ms"] = round(statistics.fmean(results.itl) * 1000, 3)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
