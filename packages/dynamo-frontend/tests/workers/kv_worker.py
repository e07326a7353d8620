"""A Backend test worker that caches every full block it is asked about and says so in KV events,
as an engine with prefix caching does; it answers with its own label (one digit)."""

import asyncio
import sys

from dynamo.llm import ModelType, register_llm
from dynamo.llm.kv.hashing import local_block_hashes, sequence_hashes
from dynamo.llm.kv.publisher import KvEventPublisher
from dynamo.runtime import DistributedRuntime, dynamo_worker

BLOCK = 16


@dynamo_worker(static=False)
async def worker(runtime: DistributedRuntime) -> None:
    namespace, label, model_path = sys.argv[1:4]
    model_name = sys.argv[4] if len(sys.argv) > 4 else "kv-model"
    component = runtime.namespace(namespace).component("backend")
    endpoint = component.endpoint("generate")
    card = await register_llm(
        ModelType.Backend, endpoint, model_path, model_name, kv_cache_block_size=BLOCK
    )
    answer = card.tokenizer().encode(label, add_special_tokens=False).ids
    publisher = KvEventPublisher(
        runtime.nats.publish, namespace, "backend", endpoint.lease_id(), BLOCK
    )
    cached: set[int] = set()
    event_id = 0

    async def handler(request):
        nonlocal event_id
        tokens = request["token_ids"]
        engine_hashes = sequence_hashes(
            local_block_hashes(tokens, BLOCK)
        )  # this engine's own names
        new = [i for i, h in enumerate(engine_hashes) if h not in cached]
        if new:
            first = new[0]
            parent = engine_hashes[first - 1] if first else None
            blocks = engine_hashes[first:]
            event_id += 1
            publisher.publish_stored(
                event_id,
                tokens[first * BLOCK : (first + len(blocks)) * BLOCK],
                [BLOCK] * len(blocks),
                blocks,
                0,
                parent,
            )
            cached.update(blocks)
            await publisher.flush()
        yield {"token_ids": answer}
        yield {"token_ids": [], "finish_reason": "stop"}

    await publisher.serve_sync(runtime.nats)  # a frontend that starts later asks what it holds
    print("ready", flush=True)
    await endpoint.serve_endpoint(handler)


if __name__ == "__main__":
    asyncio.run(worker())
