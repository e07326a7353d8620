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

Modes are `--router-mode` values; `kv:blocks` / `kv:predicted` pick the KV router's
`--router-cost`, so both costs run on the same workload in one invocation. Each KV mode's line
also has the router's predicted and the workers' reported prefix-cache hits (cached tokens
summed over requests, from /metrics) and the TTFT prediction error.

With `--upstream PYTHON`, `upstream:MODE` entries run MODE against upstream Dynamo 1.6.1's
mockers and frontend (bench/upstream.py) in the same invocation, in the order given, so the two
servers can alternate under the same machine load; the kv / round-robin ratios are computed
within each server:

    uv run python bench/kv_routing.py --upstream PY \
        --modes kv:predicted,upstream:kv,round-robin,upstream:round-robin

`--tenant-skew S` shapes how many conversations each document gets: proportional to
1/(rank+1)^S (Zipf), the same total; with many tenants and single short questions
(`--turns 1`) a few hot tenants' prefixes are wanted by more requests than one worker serves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from dataclasses import dataclass

import aiohttp
import httpx

sys.path.insert(0, os.path.dirname(__file__))
from _common import StreamStats, default_model, percentile, split_stack, stream_chat


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
        for q in range(questions_per_document(args, d))
    ]
    rng.shuffle(conversations)
    if args.rate > 0:
        for conversation, at in zip(
            conversations, poisson_arrivals(len(conversations), args.rate, rng), strict=True
        ):
            conversation.arrival_s = at
    return conversations


def poisson_arrivals(count: int, rate: float, rng: random.Random) -> list[float]:
    """`count` arrival times (seconds from the start) of a Poisson process of `rate` per
    second; bench/kv_routing_sim.py draws the same ones for the same seed."""
    times, now = [], 0.0
    for _ in range(count):
        now += rng.expovariate(rate)
        times.append(now)
    return times


def questions_per_document(args: argparse.Namespace, d: int) -> int:
    """`--questions` each, or with `--tenant-skew` the same total spread by Zipf weights."""
    if args.tenant_skew <= 0:
        return args.questions
    weights = [1 / (i + 1) ** args.tenant_skew for i in range(args.documents)]
    share = weights[d] / sum(weights)
    return max(1, round(share * args.documents * args.questions))


async def replay(
    url: str, model: str, conversations: list[Conversation], args: argparse.Namespace
) -> dict:
    """Send every conversation, turn after turn, and measure what the client sees.

    Closed loop (`--rate 0`): `--concurrency` conversations at a time. Open loop (`--rate R`):
    each conversation starts at its Poisson arrival time whatever the server's state, so every
    router mode gets exactly the same offered load; `--concurrency` still caps the conversations
    in flight there (0 = no cap).
    """
    m = StreamStats()
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
        reply = await stream_chat(session, f"{url}/v1/chat/completions", body, m)
        m.requests += 1
        return reply

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
        "turns": m.requests,
        "errors": m.errors,
        "ttft_p50_ms": round(percentile(m.ttft, 50) * 1000, 1),
        "ttft_p99_ms": round(percentile(m.ttft, 99) * 1000, 1),
        "itl_p50_ms": round(percentile(m.itl, 50) * 1000, 2),
        "itl_p99_ms": round(percentile(m.itl, 99) * 1000, 2),
        "output_tokens_per_s": round(m.tokens / wall, 1),
        "wall_s": round(wall, 2),
    }


#: What a KV mode's result line reports from the frontend's /metrics (name → key).
KV_METRICS = {
    "dynamo_frontend_kv_hit_rate": "kv_hit_rate",
    "dynamo_frontend_router_predicted_cached_tokens_total": "predicted_cached_tokens",
    "dynamo_frontend_router_actual_cached_tokens_total": "actual_cached_tokens",
    "dynamo_frontend_router_cached_tokens_error_total": "cached_tokens_abs_error",
    "dynamo_frontend_router_ttft_prediction_error": "ttft_prediction_error",
}


#: The prefix of a `--modes` entry run against upstream Dynamo (bench/upstream.py), not ours.
UPSTREAM = "upstream:"


def kv_over_round_robin(by_mode: dict[str, dict], prefix: str) -> dict[str, float]:
    """Each KV mode's TTFT p50 over round-robin's, among the modes of one server: ours
    (`prefix` "") or upstream's (`prefix` UPSTREAM), never one against the other."""
    side = {m: r for m, r in by_mode.items() if m.startswith(UPSTREAM) == bool(prefix)}
    baseline = side.get(f"{prefix}round-robin")
    if not baseline or not baseline["ttft_p50_ms"]:
        return {}
    return {
        f"{mode}_ttft_p50_over_round_robin": round(r["ttft_p50_ms"] / baseline["ttft_p50_ms"], 3)
        for mode, r in side.items()
        if mode.startswith(f"{prefix}kv")
    }


def kv_metrics(url: str) -> dict:
    """The KV router's hit rate and prediction accuracy, as the frontend counted them."""
    out: dict = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        name = line.split("{", 1)[0]
        if name in KV_METRICS:
            out[KV_METRICS[name]] = round(float(line.rsplit(" ", 1)[1]), 3)
    return out


def run_mode(mode: str, args: argparse.Namespace, conversations: list[Conversation]) -> dict:
    if mode.startswith(UPSTREAM):  # the same workload and client against upstream Dynamo
        import upstream

        result = upstream.run_kv_routing_mode(
            args.upstream,
            mode.removeprefix(UPSTREAM),
            args,
            lambda url, model: asyncio.run(replay(url, model, conversations, args)),
        )
        return {**result, "router_mode": mode}
    engine_args = {
        "speedup_ratio": args.speedup,
        "block_size": args.block_size,
        "num_gpu_blocks": args.num_gpu_blocks,
    }
    # KV routing needs the same view of the cache for every frontend replica: one frontend here.
    router_mode, _, cost = mode.partition(":")
    with split_stack(
        "mocker",
        args.model_path,
        model_name="mock",
        extra_engine_args=engine_args,
        workers=args.workers,
        router_mode=router_mode,
        frontend_args=["--router-cost", cost] if cost else (),
        timeout=300,  # 4 workers and a frontend on a loaded 2-core machine can take minutes
    ) as (url, _frontend):
        result = asyncio.run(replay(url, "mock", conversations, args))
        if router_mode == "kv":
            result.update(kv_metrics(url))
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
    p.add_argument(
        "--tenant-skew",
        type=float,
        default=0.0,
        help="Zipf exponent of the conversations per document (0 = --questions each)",
    )
    p.add_argument(
        "--modes",
        default="kv,round-robin,random",
        help="router modes, comma-separated, run in this order; kv:predicted and kv:blocks pick "
        "the KV cost; upstream:MODE runs MODE against upstream (needs --upstream)",
    )
    p.add_argument("--model-path", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--upstream",
        metavar="PYTHON",
        help="the python of a virtualenv holding upstream ai-dynamo 1.6.1, for the upstream:MODE "
        "entries of --modes; given with no such entry, every mode runs against upstream instead "
        "of ours",
    )
    args = p.parse_args()
    modes = args.modes.split(",")
    if args.upstream and not any(m.startswith(UPSTREAM) for m in modes):
        modes = [UPSTREAM + m for m in modes]
    for mode in modes:
        if mode.startswith(UPSTREAM) and not args.upstream:
            p.error(f"--modes {mode}: give --upstream PYTHON to run upstream's side")
        if mode.startswith(UPSTREAM) and ":" in mode.removeprefix(UPSTREAM):
            p.error(f"--modes {mode}: upstream has only its own KV cost (no :predicted/:blocks)")
    args.model_path = args.model_path or default_model()
    conversations = workload(args)
    results = []
    for mode in modes:
        results.append(run_mode(mode, args, conversations))
        print(json.dumps(results[-1]), flush=True)
    by_mode = {r["router_mode"]: r for r in results}
    ratios = {**kv_over_round_robin(by_mode, ""), **kv_over_round_robin(by_mode, UPSTREAM)}
    if ratios:
        print(json.dumps(ratios))


if __name__ == "__main__":
    main()
