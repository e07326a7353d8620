"""KV-aware routing against round-robin and random, on mocker workers with a shared-prefix workload.

For each router mode: start etcd and NATS (from the dev dependencies), N mocker workers
(`dynamo-run in=dyn://... out=mocker`) and a frontend (`--router-mode MODE`), then replay the
same workload at a bounded concurrency: D long documents (system prompts), each asked Q
different questions, in a shuffled order. Reports TTFT p50/p99, inter-token latency, throughput
and the KV hit rate the frontend measured, side by side, as JSON lines.

    uv run python bench/kv_routing.py --workers 4 --documents 16 --questions 6 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time

import aiohttp
import httpx

sys.path.insert(0, os.path.dirname(__file__))
from frontend import default_model, percentile

from dynamo.runtime.testing import EtcdServer, NatsServer, free_port


def workload(documents: int, questions: int, words: int, seed: int) -> list[list[dict]]:
    rng = random.Random(seed)
    docs = [
        f"Document {d}. "
        + " ".join(
            f"{rng.choice(['alpha', 'beta', 'gamma', 'delta'])}{rng.randint(0, 999)}"
            for _ in range(words)
        )
        for d in range(documents)
    ]
    requests = [
        [
            {"role": "system", "content": doc},
            {"role": "user", "content": f"Question {q} about document {d}?"},
        ]
        for d, doc in enumerate(docs)
        for q in range(questions)
    ]
    rng.shuffle(requests)
    return requests


async def replay(url: str, requests: list[list[dict]], concurrency: int, max_tokens: int) -> dict:
    ttft: list[float] = []
    itl: list[float] = []
    tokens = 0
    errors = 0
    semaphore = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, messages: list[dict]) -> None:
        nonlocal tokens, errors
        body = {
            "model": "mock",
            "stream": True,
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "messages": messages,
        }
        async with semaphore:
            start = time.perf_counter()
            last = None
            try:
                async with session.post(f"{url}/v1/chat/completions", json=body) as resp:
                    if resp.status != 200:
                        errors += 1
                        return
                    async for raw in resp.content:
                        line = raw.strip()
                        if not line.startswith(b"data: {"):
                            continue
                        chunk = json.loads(line[6:])
                        if not chunk.get("choices") or not chunk["choices"][0]["delta"].get(
                            "content"
                        ):
                            continue
                        now = time.perf_counter()
                        if last is None:
                            ttft.append(now - start)
                        else:
                            itl.append(now - last)
                        last = now
                        tokens += 1
            except aiohttp.ClientError:
                errors += 1

    start = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        await asyncio.gather(*(one(session, m) for m in requests))
    wall = time.perf_counter() - start
    return {
        "requests": len(requests),
        "errors": errors,
        "ttft_p50_ms": round(percentile(ttft, 50) * 1000, 1),
        "ttft_p99_ms": round(percentile(ttft, 99) * 1000, 1),
        "itl_p50_ms": round(percentile(itl, 50) * 1000, 2),
        "itl_p99_ms": round(percentile(itl, 99) * 1000, 2),
        "output_tokens_per_s": round(tokens / wall, 1),
        "wall_s": round(wall, 2),
    }


def kv_hit_rate(url: str) -> float | None:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("dynamo_frontend_kv_hit_rate{"):
            return round(float(line.rsplit(" ", 1)[1]), 3)
    return None


def run_mode(mode: str, args: argparse.Namespace, requests: list[list[dict]]) -> dict:
    etcd, nats = EtcdServer(), NatsServer()
    etcd.start()
    nats.start()
    env = {**os.environ, "ETCD_ENDPOINTS": etcd.url, "NATS_SERVER": nats.url, "DYN_LOG": "warn"}
    extra = json.dumps({"speedup_ratio": args.speedup, "block_size": args.block_size})
    cli = [sys.executable, "-m", "dynamo.frontend.cli"]
    procs = [
        subprocess.Popen(
            [
                *cli,
                "in=dyn://bench.mocker.generate",
                "out=mocker",
                args.model_path,
                "--model-name",
                "mock",
                "--extra-engine-args",
                extra,
            ],
            env=env,
        )
        for _ in range(args.workers)
    ]
    port = free_port()
    # KV routing needs the same view of the cache for every frontend replica: one frontend here.
    procs.append(
        subprocess.Popen(
            [
                *cli,
                "in=http",
                "out=dyn",
                "--router-mode",
                mode,
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(port),
            ],
            env=env,
        )
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        time.sleep(2 + 0.5 * args.workers)  # every worker registered and watched
        result = asyncio.run(replay(url, requests, args.concurrency, args.max_tokens))
        result["kv_hit_rate"] = kv_hit_rate(url)
        return {"router_mode": mode, **result}
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        etcd.close()
        nats.close()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--documents", type=int, default=16)
    p.add_argument("--questions", type=int, default=6)
    p.add_argument(
        "--words", type=int, default=600, help="words per document (about 2 tokens each)"
    )
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument(
        "--speedup", type=float, default=1.0, help="mocker speedup_ratio (1 = upstream's timings)"
    )
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--modes", default="kv,round-robin,random")
    p.add_argument("--model-path", default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    args.model_path = args.model_path or default_model()
    requests = workload(args.documents, args.questions, args.words, args.seed)
    results = [run_mode(mode, args, requests) for mode in args.modes.split(",")]
    for result in results:
        print(json.dumps(result), flush=True)
    by_mode = {r["router_mode"]: r for r in results}
    if "kv" in by_mode and "round-robin" in by_mode:
        ratio = by_mode["kv"]["ttft_p50_ms"] / by_mode["round-robin"]["ttft_p50_ms"]
        print(json.dumps({"kv_ttft_p50_over_round_robin": round(ratio, 3)}))


if __name__ == "__main__":
    main()
