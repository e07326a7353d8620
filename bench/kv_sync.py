"""A starting KV router's sync: what it costs the worker that answers, and the router.

When a frontend starts, every worker announces again the blocks it holds
(`KvEventPublisher.republish_held`, on the worker's event loop, in one go so that the
announcement stays in order with the live events). This builds one worker's cache of
`--blocks` blocks, as `--docs` shared documents each continued by divergent suffixes (a tree
with many branches, as a prefix cache holds), announced through the publisher's real calls; then
it times, over `--rounds`:

- `republish_s`: `republish_held()` (the copy under the lock, the chains, the JSON of each
  event, the queueing): how long the worker's loop is held;
- the events and bytes the sync sends;
- `router_apply_s`: a fresh `KvRouter` applying them (the frontend's side);
- a check that the fresh router's index holds every block the worker announced.

    uv run python bench/kv_sync.py
    uv run python bench/kv_sync.py --blocks 100000 --block-size 16
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

from dynamo.llm.kv.hashing import local_block_hashes, sequence_hashes
from dynamo.llm.kv.publisher import KvEventPublisher
from dynamo.llm.kv.router import KvRouter


def fill(publisher: KvEventPublisher, args: argparse.Namespace, rng: random.Random) -> None:
    """Store documents and their continuations until the worker holds `--blocks` blocks."""
    bs = args.block_size
    docs = [[rng.randrange(50_000) for _ in range(args.doc_blocks * bs)] for _ in range(args.docs)]
    event_id = 0
    while publisher.held_blocks() < args.blocks:
        doc = rng.choice(docs)
        tokens = doc[: rng.randrange(1, args.doc_blocks + 1) * bs] + [
            rng.randrange(50_000) for _ in range(rng.randrange(1, 32) * bs)
        ]
        hashes = sequence_hashes(local_block_hashes(tokens, bs))
        event_id += 1
        publisher.publish_stored(event_id, tokens, [bs] * len(hashes), hashes)


async def run(args: argparse.Namespace) -> None:
    sent: list[bytes] = []

    async def send(subject: str, payload: bytes) -> None:
        sent.append(payload)

    publisher = KvEventPublisher(send, "bench", "backend", 1, args.block_size)
    fill(publisher, args, random.Random(0))
    await publisher.flush()
    held = publisher.held_blocks()
    republish, apply = [], []
    for _ in range(args.rounds):
        sent.clear()
        start = time.perf_counter()
        events = publisher.republish_held()
        republish.append(time.perf_counter() - start)
        await publisher.flush()
        router = KvRouter(block_size=args.block_size)
        start = time.perf_counter()
        for payload in sent:
            router.on_event(payload)
        apply.append(time.perf_counter() - start)
        assert router.indexer.tree_size(1) == held, (router.indexer.tree_size(1), held)
    await publisher.close()
    print(
        f"blocks={held} events={events} bytes={sum(map(len, sent))} "
        f"republish_s p50={statistics.median(republish):.4f} max={max(republish):.4f} "
        f"router_apply_s p50={statistics.median(apply):.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=100_000, help="blocks the worker holds")
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--docs", type=int, default=200, help="shared documents")
    parser.add_argument("--doc-blocks", type=int, default=64, help="blocks per document")
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
