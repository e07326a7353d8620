"""One KV routing decision at 64 workers x 100k indexed blocks: p50 / p99 latency.

Builds a `KvRouter` whose radix tree holds `--blocks` distinct blocks, announced through real
event JSON (`on_event`): `--docs` shared "documents" (long common prefixes), each continued by
many divergent suffixes, every sequence cached on 1-8 random workers. Every worker also has
`--active` requests in flight in the router's load tracker, so the cost computation does real
work. Then it times `select()` for prompts of `--prompt-tokens` tokens that share a document
prefix (the common case for KV routing): hashing the prompt, the radix walk, the per-worker
cost, the choice and the bookkeeping; `free()` runs after the timer stops.

Each decision is timed twice: wall clock, and the thread's CPU time. On a shared machine the
wall clock's p99 is whoever preempted the process; the CPU time's is the router's own work
(it still carries cache misses a busy neighbour causes), so compare the two before blaming
the router for a slow tail.

    uv run python bench/kv_router_micro.py
    uv run python bench/kv_router_micro.py --workers 64 --blocks 100000 --prompt-tokens 8192
    uv run python bench/kv_router_micro.py --cost blocks   # upstream's cost
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time

from dynamo.llm.kv.events import stored_event_json
from dynamo.llm.kv.hashing import local_block_hashes, sequence_hashes
from dynamo.llm.kv.router import KvRouter


def build(args: argparse.Namespace, rng: random.Random) -> tuple[KvRouter, list[list[int]]]:
    bs = args.block_size
    router = KvRouter(block_size=bs, seed=0, cost=args.cost)
    workers = list(range(1, args.workers + 1))
    doc_blocks = args.prompt_tokens // bs // 2
    docs = [[rng.randrange(50_000) for _ in range(doc_blocks * bs)] for _ in range(args.docs)]
    event_id = 0
    indexed = 0
    while indexed < args.blocks:
        doc = rng.choice(docs)
        keep = rng.randrange(1, doc_blocks + 1) * bs
        tail = [rng.randrange(50_000) for _ in range(rng.randrange(1, 64) * bs)]
        tokens = doc[:keep] + tail
        local = local_block_hashes(tokens, bs)
        seq = sequence_hashes(local)
        for worker in rng.sample(workers, rng.randrange(1, 9)):
            event_id += 1
            blocks = list(zip(seq, local, strict=True))
            router.on_event(stored_event_json(worker, event_id, None, blocks))
        indexed = router.indexer.num_nodes()
    for worker in workers:
        for i in range(args.active):
            doc = rng.choice(docs)
            router.select(doc[: rng.randrange(1, len(doc))], [worker], f"bg-{worker}-{i}")
    return router, docs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--blocks", type=int, default=100_000, help="distinct blocks in the tree")
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--prompt-tokens", type=int, default=4096)
    p.add_argument("--docs", type=int, default=50, help="shared prefixes")
    p.add_argument("--active", type=int, default=8, help="in-flight requests per worker")
    p.add_argument("--decisions", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cost", choices=["predicted", "blocks"], default="predicted")
    p.add_argument(
        "--gc",
        action="store_true",
        help="keep the cyclic garbage collector on while timing (as in a real frontend)",
    )
    args = p.parse_args()
    rng = random.Random(args.seed)

    t0 = time.perf_counter()
    router, docs = build(args, rng)
    built = time.perf_counter() - t0
    workers = list(range(1, args.workers + 1))
    nodes = router.indexer.num_nodes()
    held = sum(router.indexer.tree_sizes().values())

    prompts = []
    for _ in range(256):
        doc = rng.choice(docs)
        rest = args.prompt_tokens - len(doc)
        prompts.append(doc + [rng.randrange(50_000) for _ in range(rest)])

    samples: list[float] = []
    cpu: list[float] = []
    overlaps = 0
    gc.collect()
    if not args.gc:
        gc.disable()
    try:
        for i in range(args.decisions):
            prompt = prompts[i % len(prompts)]
            start_cpu = time.thread_time_ns()
            start = time.perf_counter_ns()
            _, overlap = router.select(prompt, workers, f"q{i}")
            end = time.perf_counter_ns()
            cpu.append((time.thread_time_ns() - start_cpu) / 1000)
            samples.append((end - start) / 1000)
            overlaps += overlap
            router.free(f"q{i}")
    finally:
        gc.enable()
    samples.sort()
    cpu.sort()
    p50 = statistics.median(samples)
    p99 = samples[int(len(samples) * 0.99) - 1]
    cpu_p99 = cpu[int(len(cpu) * 0.99) - 1]
    print(
        f"workers={args.workers} indexed_blocks={nodes} worker_block_entries={held} "
        f"block_size={args.block_size} prompt_tokens={args.prompt_tokens} "
        f"active_per_worker={args.active} cost={args.cost} build_s={built:.1f}"
    )
    print(
        f"select(): p50={p50:.0f}us p99={p99:.0f}us max={samples[-1]:.0f}us "
        f"mean_overlap_blocks={overlaps / args.decisions:.1f} of {args.prompt_tokens // args.block_size}"
    )
    print(
        f"select() CPU time: p50={statistics.median(cpu):.0f}us p99={cpu_p99:.0f}us "
        f"max={cpu[-1]:.0f}us"
    )


if __name__ == "__main__":
    main()
