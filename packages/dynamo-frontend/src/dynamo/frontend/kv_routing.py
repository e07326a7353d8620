"""`--router-mode kv`: route each request to the worker with the best cached prefix for its load.

One `KvRouter` per served model. It learns which worker holds which blocks from the workers' KV
events (`namespace.{ns}.component.{comp}.kv_events` on NATS), forgets a worker when its instance
leaves etcd, and tracks every request from routing to its last token. Several frontends can run
at once: each builds its own index from the same event stream.

Beside it, the workers' own load reports (`ForwardPassMetrics` on `namespace.{ns}.kv_metrics`)
are kept per worker in `WorkerLoads`, for `/metrics` and for the `predicted` cost (the requests
a worker reports waiting); a worker's leave drops them too.

Per request, the stream tells the router when the first token came (what the `predicted` cost
learns from) and how many prompt tokens the worker reused from its prefix cache
(`completion_usage.prompt_tokens_details.cached_tokens`, which the mocker, vLLM and SGLang
workers send), to compare with the overlap the router predicted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats.errors

from dynamo.llm.discovery import DiscoveredModel
from dynamo.llm.kv.indexer import DEFAULT_MAX_BLOCKS
from dynamo.llm.kv.load_metrics import WorkerLoads
from dynamo.llm.kv.router import KvRouter
from dynamo.llm.router_engine import RouterEngine
from dynamo.llm.schema import kv_events_subject, kv_metrics_subject, kv_sync_subject
from dynamo.runtime import DistributedRuntime, NoInstancesError
from dynamo.runtime.client import Client
from dynamo.runtime.context import Context

log = logging.getLogger(__name__)


class KvRouterEngine(RouterEngine):
    """A `RouterEngine` whose instance choice is the KV router's."""

    def __init__(self, client: Client, router: KvRouter, loads: WorkerLoads | None = None):
        super().__init__(client)
        self.router = router
        #: The workers' latest load reports (read by `/metrics`).
        self.loads = loads if loads is not None else WorkerLoads()

    def open_stream(
        self,
        request: dict[str, Any],
        context: Context,
        errors: Callable[[Exception], Exception] | None = None,
    ) -> AsyncIterator[Any]:
        if request.get("backend_instance_id") is not None:
            return super().open_stream(request, context, errors)
        return self._kv_stream(request, context, errors)

    async def _kv_stream(
        self,
        request: dict[str, Any],
        context: Context,
        errors: Callable[[Exception], Exception] | None,
    ) -> AsyncIterator[Any]:
        rid = context.id()
        router = self.router
        routed = False

        def pick(tried: set[int]) -> int:
            nonlocal routed
            candidates = [i for i in self.client.instance_ids() if i not in tried]
            if not candidates:
                raise NoInstancesError(self.client.endpoint.path)
            if routed:  # a retry after the first choice was gone: route again without it
                router.free(rid)
            worker, overlap = router.select(
                request["token_ids"], candidates, rid, request.get("router_config_override")
            )
            request["estimated_prefix_hit_num_blocks"] = overlap
            routed = True
            return worker

        first = True
        cache_reported = False
        try:
            async for item in self.client.stream(request, context, pick=pick, errors=errors):
                if first:
                    router.mark_prefill_completed(rid)
                    first = False
                if not cache_reported:
                    cached = _cached_tokens(item)
                    if cached is not None:
                        router.report_cached_tokens(rid, cached)
                        cache_reported = True
                yield item
        finally:
            router.free(rid)


def _cached_tokens(item: Any) -> int | None:
    """`completion_usage.prompt_tokens_details.cached_tokens` of a worker's delta, if there."""
    if not isinstance(item, dict):
        return None
    usage = item.get("completion_usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return cached if isinstance(cached, int) else None


async def start_kv_router(
    runtime: DistributedRuntime,
    model: DiscoveredModel,
    weight: float,
    temperature: float,
    max_index_blocks: int | None = DEFAULT_MAX_BLOCKS,
    cost: str = "predicted",
) -> KvRouterEngine:
    """A KV router for one discovered model, fed by its component's event subject."""
    loads = WorkerLoads()
    router = KvRouter(
        block_size=model.card.kv_cache_block_size,
        overlap_score_weight=weight,
        temperature=temperature,
        max_index_blocks=max_index_blocks,
        cost=cost,
        waiting=loads.waiting,
        capacity=loads.total_blocks,
    )
    endpoint = model.client.endpoint
    subject = kv_events_subject(endpoint.component.namespace, endpoint.component.name)

    async def on_event(msg: Any) -> None:
        router.on_event(msg.data)

    async def on_load(msg: Any) -> None:
        loads.on_message(msg.data)

    subscriptions = [
        await runtime.nats.subscribe(subject, cb=on_event),
        await runtime.nats.subscribe(kv_metrics_subject(endpoint.component.namespace), cb=on_load),
    ]
    # The workers there already announce again what they hold, on the subject just subscribed
    # (one connection: NATS has the subscription before the request): a frontend that starts or
    # restarts routes on the caches it finds, not as if every worker were cold.
    await runtime.nats.publish(
        kv_sync_subject(endpoint.component.namespace, endpoint.component.name), b""
    )
    model.client.on_instance_removed.append(router.remove_worker)
    model.client.on_instance_removed.append(loads.remove_worker)

    async def unsubscribe() -> None:
        for subscription in subscriptions:
            with contextlib.suppress(nats.errors.Error):  # the connection may be closed already
                await subscription.unsubscribe()

    # The model leaves when its last worker does (its client closes), and may come back with a
    # new client and router: the old router's subscriptions go with the old client.
    model.client.on_close.append(unsubscribe)
    log.info("KV routing '%s' on %s (block size %d)", model.name, subject, router.block_size)
    return KvRouterEngine(model.client, router, loads)
