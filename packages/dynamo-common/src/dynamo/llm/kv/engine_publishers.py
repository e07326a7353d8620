"""`EnginePublishers`: the KV-event and load publishers a worker hands its engine.

Upstream's rule is that engines never instantiate publishers: the worker knows the served
model's namespace, component and instance, the engine knows what it runs with. So the two meet
here:

    engine = await cls.start(config)                   # config.distributed = True
    publishers = await attach_publishers(engine, component, worker_id)
    ...serve...
    await engine.close()                               # stops feeding them
    await publishers.close()                           # the worker made them: it closes them

`attach_publishers` reads `engine.runtime()` (`dynamo.llm.engine.EngineRuntime`): one
`KvEventPublisher` per data-parallel rank, with the engine's KV block size, when it emits KV
events (each answering routers' syncs: a router that starts later learns what the worker
holds); one `WorkerMetricsPublisher` serving the component's `load_metrics` endpoint when it
reports load; nothing (and no `attach`) when it asks for neither. The engine then feeds them:
its scheduler calls `publish_stored`/`publish_removed`/`publish`, or a relay of its library's
own events does. In process nothing is attached, and tests hand an engine sinks of their own
(`EnginePublishers(kv_events=(recorder,), metrics=recording)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dynamo.llm.kv.zmq_events import KvEventSink

if TYPE_CHECKING:
    from dynamo.llm.engine import Engine, EngineRuntime


class MetricsSink(Protocol):
    """Where an engine's load reports go: `dynamo.llm.WorkerMetricsPublisher` is one."""

    def publish(self, metrics: Any) -> None: ...


@dataclass(frozen=True)
class EnginePublishers:
    """What an engine publishes through; see the module docstring."""

    #: One KV event sink per data-parallel rank, by rank (empty: the engine emits no KV events).
    kv_events: tuple[KvEventSink, ...] = ()
    metrics: MetricsSink | None = None
    #: What `for_worker` built, closed by `close` (sinks a caller passed in stay theirs).
    _owned: tuple[Any, ...] = field(default=(), repr=False)

    def kv_events_of_rank(self, rank: int) -> KvEventSink | None:
        """Rank `rank`'s KV event sink, or None when there is none."""
        return self.kv_events[rank] if 0 <= rank < len(self.kv_events) else None

    @classmethod
    async def for_worker(
        cls, component: Any, worker_id: int, runtime: EngineRuntime
    ) -> EnginePublishers:
        """The publishers `runtime` asks for, on a `dynamo.runtime` component's connection, as
        instance `worker_id`."""
        from dynamo.llm.kv.metrics_publisher import WorkerMetricsPublisher
        from dynamo.llm.kv.publisher import KvEventPublisher

        kv: tuple[KvEventPublisher, ...] = ()
        if runtime.kv_events:
            assert runtime.kv_cache_block_size is not None  # EngineRuntime checks it
            kv = tuple(
                KvEventPublisher.for_component(
                    component, worker_id, runtime.kv_cache_block_size, dp_rank=rank
                )
                for rank in range(runtime.data_parallel_size)
            )
        metrics = None
        try:
            if kv and component.runtime.config.needs_nats:
                # A router that starts later asks for what this worker holds already.
                for publisher in kv:
                    await publisher.serve_sync(component.runtime.nats)
            if runtime.load_metrics:
                metrics = WorkerMetricsPublisher()
                await metrics.create_endpoint(component)
        except BaseException:
            for publisher in kv:
                await publisher.close()
            raise
        owned: tuple[Any, ...] = (*kv, *([metrics] if metrics is not None else []))
        return cls(kv, metrics, owned)

    async def close(self) -> None:
        """Flush and close what `for_worker` built (after the engine stopped feeding them)."""
        for publisher in self._owned:
            await publisher.close()


async def attach_publishers(
    engine: Engine, component: Any, worker_id: int
) -> EnginePublishers | None:
    """Build the publishers `engine.runtime()` asks for and hand them to the engine; None (and
    no `attach`) when it asks for none. The caller closes what it gets after the engine."""
    runtime = engine.runtime()
    if not runtime.publishes:
        return None
    publishers = await EnginePublishers.for_worker(component, worker_id, runtime)
    try:
        await engine.attach(publishers)
    except BaseException:
        await publishers.close()
        raise
    return publishers


__all__ = ["EnginePublishers", "MetricsSink", "attach_publishers"]
