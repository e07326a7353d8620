"""`WorkerMetricsPublisher`: how a worker reports its load to routers (upstream's Python API).

    publisher = WorkerMetricsPublisher()
    await publisher.create_endpoint(component)    # worker id = the runtime's primary lease
    publisher.publish(ForwardPassMetrics(WorkerStats(...), KvStats(...)))   # every step
    await publisher.close()

`publish` only remembers the latest value (upstream: a `watch` channel's send), so an engine may
call it after every scheduler step at no cost. One background task sends it as a `LoadEvent`
(`{"worker_id", "data": ForwardPassMetrics}`) on `namespace.{ns}.kv_metrics`, as upstream does:

- **on change**: a value whose JSON equals the last one sent is not news and waits for the
  refresh below;
- **coalesced**: after a send, the task waits `min_interval` (default 100 ms) before the next,
  and then sends whatever is latest. The first change after a quiet spell goes out at once;
- **refreshed**: while nothing changes, the latest value is sent again every
  `refresh_interval` (default 1 s), so a router that subscribes later (a frontend that starts,
  or discovers the model, after the worker went idle) or missed a message (NATS core delivers at
  most once) is current within a second. Nothing is sent before the first `publish`.

Why not one message per step, or upstream's 1 ms debounce: steps come every few milliseconds on a
real engine and every few microseconds on a mocker with a high `speedup_ratio`; at those rates a
message per step costs more than the step and tells a reader (Prometheus scrapes every few
seconds; routers track their own active blocks per request) nothing it can use. A debounce that
waits for a quiet millisecond never fires while load keeps changing; a throttle bounds both the
rate (at most 10 messages/s per worker by default) and the staleness (at most `min_interval`).

`create_endpoint(component)` also serves upstream's pull-side `load_metrics` endpoint on the
component: a request (any payload) is answered with one message, the latest `ForwardPassMetrics`
as JSON (all zeros before the first `publish`). Without a runtime,
`start(send, namespace, worker_id)` takes any async `send(subject, payload)`.

`publish` may be called from another thread (an engine's own loop): the task is woken through
the event loop. A mapping of `ForwardPassMetrics`' shape is accepted too; it is validated when
sent, and an invalid one is logged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from dynamo.llm.kv.load_metrics import (
    KV_METRICS_ENDPOINT,
    ForwardPassMetrics,
    as_forward_pass_metrics,
    kv_metrics_subject,
)

log = logging.getLogger(__name__)

SendFn = Callable[[str, bytes], Awaitable[Any]]

#: At most one send per this many seconds (see the module docstring).
DEFAULT_MIN_INTERVAL = 0.1
#: An unchanged value is sent again after this many seconds.
DEFAULT_REFRESH_INTERVAL = 1.0
# How long `close` waits for the `load_metrics` endpoint to deregister during a shutdown.
_SERVE_STOP_SECONDS = 2.0


class WorkerMetricsPublisher:
    """Publishes a worker's `ForwardPassMetrics`; see the module docstring."""

    def __init__(
        self,
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
    ) -> None:
        if min_interval < 0 or refresh_interval <= 0:
            raise ValueError(
                f"need min_interval >= 0 and refresh_interval > 0, got {min_interval}, "
                f"{refresh_interval}"
            )
        self.min_interval = min_interval
        self.refresh_interval = refresh_interval
        self.subject: str | None = None
        self.worker_id: int | None = None
        self._latest: ForwardPassMetrics | Mapping[str, Any] | None = None
        self._send: SendFn | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._woken = False  # a wake-up is already on its way (saves thread hops)
        self._task: asyncio.Task[None] | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._runtime: Any = None
        self._closed = False
        #: Messages sent, sends that failed (logged; retried after `min_interval`), and values
        #: that were not a valid `ForwardPassMetrics` (logged, dropped).
        self.published = 0
        self.failed = 0
        self.invalid = 0

    # -- upstream API ---------------------------------------------------------------------------

    def publish(self, metrics: ForwardPassMetrics | Mapping[str, Any]) -> None:
        """Update the metrics being reported. Cheap: the send happens later, coalesced."""
        if self._closed:
            raise RuntimeError("WorkerMetricsPublisher is closed")
        self._latest = metrics
        if self._wake is None or self._woken:
            return
        self._woken = True
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._wake.set()
        else:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._wake.set)

    async def create_endpoint(
        self, component: Any, metrics_labels: list[tuple[str, str]] | None = None
    ) -> None:
        """Start publishing for a `dynamo.runtime` component, and serve its `load_metrics`
        endpoint. Returns at once (upstream's first version blocked while serving; callers of
        either kind work). `metrics_labels` is upstream's parameter, refused when given
        (`ValueError`): the load reports go to routers, not to Prometheus, so there is nothing to
        label."""
        if metrics_labels is not None:
            raise ValueError(
                "create_endpoint(metrics_labels=...): the load reports carry no labels here; "
                "leave it unset"
            )
        runtime = component.runtime
        await runtime.ensure_connected()
        worker_id = await runtime.primary_lease()

        send = runtime.event_sender("load metrics")

        self.start(send, component.namespace, worker_id)
        self._runtime = runtime
        runtime.add_closer(self.close)
        endpoint = component.endpoint(KV_METRICS_ENDPOINT)
        self._serve_task = asyncio.create_task(
            endpoint.serve_endpoint(self._answer, graceful_shutdown=False),
            name=f"{KV_METRICS_ENDPOINT} {component.namespace}.{component.name}",
        )
        self._serve_task.add_done_callback(_log_failure)

    # -- without a runtime ------------------------------------------------------------------------

    def start(self, send: SendFn, namespace: str, worker_id: int) -> None:
        """Publish through `send` on `namespace`'s subject as `worker_id` (call on the loop)."""
        if self._task is not None:
            raise RuntimeError("WorkerMetricsPublisher is already started")
        if self._closed:
            raise RuntimeError("WorkerMetricsPublisher is closed")
        self._send = send
        self.subject = kv_metrics_subject(namespace)
        self.worker_id = worker_id
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._run(), name="worker-metrics-publisher")
        if self._latest is not None:  # published before start: send it now
            self._woken = True
            self._wake.set()

    # -- delivery ---------------------------------------------------------------------------------

    def current(self) -> ForwardPassMetrics:
        """The latest metrics, validated (all zeros before the first `publish`)."""
        latest = self._latest
        return ForwardPassMetrics.zero() if latest is None else as_forward_pass_metrics(latest)

    def _payload(self) -> bytes | None:
        try:
            data = self.current().model_dump(mode="json")
        except ValidationError as e:
            self.invalid += 1
            level = logging.WARNING if self.invalid == 1 else logging.DEBUG
            log.log(level, "dropping load metrics that are not a ForwardPassMetrics: %s", e)
            return None
        return orjson.dumps({"worker_id": self.worker_id, "data": data})

    async def _run(self) -> None:
        assert self._wake is not None and self._send is not None and self.subject is not None
        last: bytes | None = None
        failing = False
        while True:
            try:
                async with asyncio.timeout(self.refresh_interval):
                    await self._wake.wait()
                changed = True
            except TimeoutError:
                changed = False  # quiet for a while: say the latest again
            self._wake.clear()
            self._woken = False  # cleared before reading, so a later publish wakes us again
            if self._latest is None:
                continue
            payload = self._payload()
            if changed and payload is not None and payload == last:
                continue
            if payload is not None:
                try:
                    await self._send(self.subject, payload)
                except Exception as e:  # a lost report costs a reader freshness, not the worker
                    self.failed += 1
                    level = logging.DEBUG if failing else logging.WARNING  # once per outage
                    log.log(level, "could not publish load metrics on %s: %s", self.subject, e)
                    failing = True
                    self._wake.set()  # try again after the interval
                else:
                    self.published += 1
                    last = payload
                    failing = False
            await asyncio.sleep(self.min_interval)

    async def _answer(self, request: Any) -> AsyncIterator[dict[str, Any]]:
        """The `load_metrics` endpoint: one message, the latest metrics."""
        yield self.current().model_dump(mode="json")

    async def close(self) -> None:
        """Stop sending and serving `load_metrics` (its instance leaves etcd). Later `publish`
        calls raise. Idempotent; also run by the runtime's close."""
        self._closed = True
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.remove_closer(self.close)
        serving, self._serve_task = self._serve_task, None
        if serving is not None and runtime is not None and runtime.shutting_down.is_set():
            # The runtime is stopping: the endpoint is deregistering by itself; let it finish.
            await asyncio.wait({serving}, timeout=_SERVE_STOP_SECONDS)
        tasks = [t for t in (self._task, serving) if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            # A failure of the endpoint was logged when it happened.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the %s endpoint stopped: %s", KV_METRICS_ENDPOINT, task.exception())


__all__ = ["DEFAULT_MIN_INTERVAL", "DEFAULT_REFRESH_INTERVAL", "SendFn", "WorkerMetricsPublisher"]
