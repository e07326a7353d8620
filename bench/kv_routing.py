"""KV-aware routing against round-robin and random, on mocker workers with a shared-prefix workload.

For each router mode: start etcd and NATS (from the dev dependencies), N mocker workers
(`dynamo-run in=dyn://... out=mocker`) and a frontend (`--router-mode MODE`), then replay the
same workload: D long documents (system prompts), each the subject of Q conversations of T
user turns (every turn resends the history), shuffled, either closed loop at a bounded
concurrency or open loop at a fixed Poisson arrival rate (the same offered load for every
mode). Reports TTFT p50/p99, inter-token latency, throughput and the KV hit rate the frontend
measured, side by side, as JSON lines.

    uv run python bench/kv_routing.py --workers 4 --documents 16 --questions 6 --concurrency 8
    uv run python bench/kv_routing.py --words 2000 --rate 4 --concurrency 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import httpx

sys.path.insert(0, os.path.dirname(__file__))
from frontend import default_model, percentile

from dynamo.runtime.testing import EtcdServer, NatsServer, free_port


@dataclass
class Conversation:
    """One user's session: a document (system prompt) and the questions asked about it, in order.

    Every turn after the first resends the whole history, the replies included, so its prompt
    extends the previous turn's: the multi-turn case of prefix reuse.
    """

    document: str
    questions: list[str]
    #: Seconds after the start of the run at which the first turn is sent (open loop only).
    arrival_s: float = 0.0


def workload(args: argparse.Namespace) -> list[Conversation]:
    """`--documents` documents of `--words` words, each the subject of `--questions`
    conversations of `--turns` turns, shuffled; with `--rate`, Poisson arrival times."""
    rng = random.Random(args.seed)
    docs = [
        f"Document {d}. "
        + " ".join(
            f"{rng.choice(['alpha', 'beta', 'gamma', 'delta'])}{rng.randint(0, 999)}"
            for _ in range(args.words)
        )
        for d in range(args.documents)
    ]
    conversations = [
        Conversation(doc, [f"Question {q}.{t} about document {d}?" for t in range(args.turns)])
        for d, doc in enumerate(docs)
        for q in range(args.questions)
    ]
    rng.shuffle(conversations)
    if args.rate > 0:
        now = 0.0
        for conversation in conversations:
            now += rng.expovariate(args.rate)
            conversation.arrival_s = now
    return conversations


@dataclass
class Measurements:
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    tokens: int = 0
    turns: int = 0
    errors: int = 0


async def replay(
    url: str, model: str, conversations: list[Conversation], args: argparse.Namespace
) -> dict:
    """Send every conversation, turn after turn, and measure what the client sees.

    Closed loop (`--rate 0`): `--concurrency` conversations at a time. Open loop (`--rate R`):
    each conversation starts at its Poisson arrival time whatever the server's state, so every
    router mode gets exactly the same offered load; `--concurrency` still caps the conversations
    in flight there (0 = no cap).
    """
    m = Measurements()
    cap = args.concurrency if args.concurrency > 0 else len(conversations)
    semaphore = asyncio.Semaphore(cap)

    async def turn(session: aiohttp.ClientSession, messages: list[dict]) -> str:
        body = {
            "model": model,
            "stream": True,
            "max_tokens": args.max_tokens,
            "ignore_eos": True,
            "messages": messages,
        }
        start = time.perf_counter()
        last = None
        text: list[str] = []
        async with session.post(f"{url}/v1/chat/completions", json=body) as resp:
            if resp.status != 200:
                raise aiohttp.ClientError(f"HTTP {resp.status}")
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data: {"):
                    continue
                chunk = json.loads(line[6:])
                content = (
                    chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
                )
                if not content:
                    continue
                now = time.perf_counter()
                if last is None:
                    m.ttft.append(now - start)
                else:
                    m.itl.append(now - last)
                last = now
                m.tokens += 1
                text.append(content)
        m.turns += 1
        return "".join(text)

    async def converse(
        session: aiohttp.ClientSession, conversation: Conversation, t0: float
    ) -> None:
        if args.rate > 0:
            await asyncio.sleep(max(0.0, t0 + conversation.arrival_s - time.perf_counter()))
        async with semaphore:
            messages = [{"role": "system", "content": conversation.document}]
            for question in conversation.questions:
                messages.append({"role": "user", "content": question})
                try:
                    reply = await turn(session, messages)
                except (aiohttp.ClientError, KeyError, ValueError):
                    m.errors += 1
                    return
                messages.append({"role": "assistant", "content": reply})

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=600), connector=connector
    ) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(converse(session, c, t0) for c in conversations))
        wall = time.perf_counter() - t0
    return {
        "turns": m.turns,
        "errors": m.errors,
        "ttft_p50_ms": round(percentile(m.ttft, 50) * 1000, 1),
        "ttft_p99_ms": round(percentile(m.ttft, 99) * 1000, 1),
        "itl_p50_ms": round(percentile(m.itl, 50) * 1000, 2),
        "itl_p99_ms": round(percentile(m.itl, 99) * 1000, 2),
        "output_tokens_per_s": round(m.tokens / wall, 1),
        "wall_s": round(wall, 2),
    }


def kv_hit_rate(url: str) -> float | None:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("dynamo_frontend_kv_hit_rate{"):
            return round(float(line.rsplit(" ", 1)[1]), 3)
    return None


@contextlib.contextmanager
def our_stack(mode: str, args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """etcd, NATS, `--workers` mocker workers and one frontend routing with `mode`; yields the
    frontend's URL and the model name, and stops everything on exit."""
    etcd, nats = EtcdServer(), NatsServer()
    etcd.start()
    nats.start()
    env = {**os.environ, "ETCD_ENDPOINTS": etcd.url, "NATS_SERVER": nats.url, "DYN_LOG": "warn"}
    extra = json.dumps(
        {
            "speedup_ratio": args.speedup,
            "block_size": args.block_size,
            "num_gpu_blocks": args.num_gpu_blocks,
        }
    )
    cli = [sys.executable, "-m", "dynamo.frontend.cli"]
    worker = [*cli, "in=dyn://bench.mocker.generate", "out=mocker", args.model_path]
    procs = [
        subprocess.Popen([*worker, "--model-name", "mock", "--extra-engine-args", extra], env=env)
        for _ in range(args.workers)
    ]
    port = free_port()
    # KV routing needs the same view of the cache for every frontend replica: one frontend here.
    frontend = [*cli, "in=http", "out=dyn", "--router-mode", mode]
    procs.append(
        subprocess.Popen([*frontend, "--http-host", "127.0.0.1", "--http-port", str(port)], env=env)
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_workers(url, "mock", args.workers)
        yield url, "mock"
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


def wait_for_workers(url: str, model: str, workers: int, timeout: float = 120) -> None:
    """Until the frontend lists `model`, then long enough for every worker to be watched."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            listed = httpx.get(f"{url}/v1/models", timeout=1).json().get("data", [])
            if any(entry.get("id") == model for entry in listed):
                break
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    else:
        raise SystemExit(f"{url} did not list model {model!r} within {timeout:.0f} s")
    time.sleep(2 + 0.5 * workers)  # the other workers registered and watched too


def run_mode(mode: str, args: argparse.Namespace, conversations: list[Conversation]) -> dict:
    if args.upstream:  # the same workload and client against upstream Dynamo (bench/upstream.py)
        import upstream

        return upstream.run_kv_routing_mode(
            args.upstream,
            mode,
            args,
            lambda url, model: asyncio.run(replay(url, model, conversations, args)),
        )
    with our_stack(mode, args) as (url, model):
        result = asyncio.run(replay(url, model, conversations, args))
        result["kv_hit_rate"] = kv_hit_rate(url)
    return {"router_mode": mode, **result}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--documents", type=int, default=16)
    p.add_argument("--questions", type=int, default=6, help="conversations per document")
    p.add_argument("--turns", type=int, default=2, help="user turns per conversation")
    p.add_argument(
        "--words",
        type=int,
        default=600,
        help="words per document (about 4 SmolLM2 tokens each: 1000 words are ~3.9k tokens)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="open loop: conversations per second, Poisson arrivals (0 = closed loop)",
    )
    p.add_argument(
        "--concurrency", type=int, default=8, help="conversations in flight at most (0 = no cap)"
    )
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument(
        "--speedup", type=float, default=1.0, help="mocker speedup_ratio (1 = upstream's timings)"
    )
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument(
        "--num-gpu-blocks",
        type=int,
        default=16384,
        help="KV blocks per mocker worker (upstream's default; lower it so that one worker's "
        "cache cannot hold every document but all workers' caches together can)",
    )
    p.add_argument("--modes", default="kv,round-robin,random")
    p.add_argument("--model-path", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--upstream",
        metavar="PYTHON",
        help="the python of a virtualenv holding upstream ai-dynamo 1.6.1: run every mode "
        "against its mocker and frontend instead of ours",
    )
    args = p.parse_args()
    args.model_path = args.model_path or default_model()
    conversations = workload(args)
    results = [run_mode(mode, args, conversations) for mode in args.modes.split(",")]
    for result in results:
        print(json.dumps(result), flush=True)
    by_mode = {r["router_mode"]: r for r in results}
    if "kv" in by_mode and "round-robin" in by_mode:
        ratio = by_mode["kv"]["ttft_p50_ms"] / by_mode["round-robin"]["ttft_p50_ms"]
        print(json.dumps({"kv_ttft_p50_over_round_robin": round(ratio, 3)}))


if __name__ == "__main__":
    main()
