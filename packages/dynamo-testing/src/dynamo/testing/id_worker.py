"""A test worker: answers with its own instance id, `n` times, `delay` seconds apart.

`python -m dynamo.testing.id_worker NAMESPACE` serves `NAMESPACE.backend.generate` and prints
`ready <instance id in hex>` once it is registered (`dynamo.testing.workers.Workers` reads it)."""

from __future__ import annotations

import asyncio
import sys

from dynamo.runtime import DistributedRuntime, dynamo_worker


@dynamo_worker(static=False)
async def worker(runtime: DistributedRuntime) -> None:
    endpoint = runtime.namespace(sys.argv[1]).component("backend").endpoint("generate")
    instance_id = await runtime.primary_lease()

    async def handler(request, context):
        for i in range(request.get("n", 1)):
            if context.is_stopped():
                return
            await asyncio.sleep(request.get("delay", 0))
            yield {"instance": instance_id, "i": i}

    print(f"ready {instance_id:x}", flush=True)
    await endpoint.serve_endpoint(handler)


if __name__ == "__main__":
    asyncio.run(worker())  # pyright: ignore[reportCallIssue] - @dynamo_worker passes the runtime
