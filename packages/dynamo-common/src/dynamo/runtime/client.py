"""Calling an endpoint: `Client` follows its instances in etcd, routes, and retries.

The pipeline's adapter over a client (`out=dyn`) is `dynamo.llm.router_engine.RouterEngine`: the
runtime knows nothing of LLM errors or requests."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from dynamo.runtime.context import Context
from dynamo.runtime.errors import InstanceGoneError, NoInstancesError, UnknownInstanceError
from dynamo.runtime.load_balance import LOAD_MODES, pick_by_load
from dynamo.runtime.request_plane import stream_request
from dynamo.runtime.schema import InstanceRecord, instance_id_of
from dynamo.runtime.tasks import stop_tasks

if TYPE_CHECKING:
    from dynamo.runtime.component import Endpoint

log = logging.getLogger(__name__)

MARK_DOWN_SECONDS = 3.0
NO_INSTANCE_WAIT_SECONDS = 5.0


class _Stream:
    """An async iterator that can also be awaited: `await client.generate(r)` and
    `client.generate(r)` both work, as callers of upstream's API write either."""

    def __init__(self, agen: AsyncIterator[Any]):
        self._agen = agen

    def __await__(self):
        async def itself() -> _Stream:
            return self

        return itself().__await__()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._agen

    async def __anext__(self) -> Any:
        return await self._agen.__anext__()

    async def aclose(self) -> None:
        await self._agen.aclose()  # type: ignore[attr-defined]


class Client:
    """Calls an endpoint's instances, following them as they come and go in etcd."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self.runtime = endpoint.runtime
        self._instances: dict[int, InstanceRecord] = {}
        #: Only these instances take requests, when set (`limit_to`).
        self._allowed: frozenset[int] | None = None
        self._down: dict[int, float] = {}  # instance id -> when to try it again
        self._busy: collections.Counter[int] = collections.Counter()  # requests in flight
        #: Requests one instance can run at once (its engine's published capacity); None: no
        #: limit. Round-robin and random skip a full instance while another one has room, so
        #: no request queues behind a worker that cannot serve it yet.
        self.instance_capacity: int | None = None
        self._changed = asyncio.Event()
        self._watch: asyncio.Task | None = None
        self._rr = 0
        #: Called with an instance id when it leaves etcd (the KV router drops its blocks).
        self.on_instance_removed: list[Callable[[int], None]] = []
        #: Awaited once when the client closes: what was built around it (the KV router's
        #: subscriptions) goes with it, not only at runtime shutdown.
        self.on_close: list[Callable[[], Awaitable[None]]] = []

    async def start(self) -> None:
        """List the instances there now (so `instance_ids()` is right at once), then follow."""
        await self.runtime.ensure_connected()
        for key, value in (await self.runtime.etcd.get_prefix(self.endpoint.prefix)).items():
            self._apply("put", key, value)
        self._watch = asyncio.create_task(self._follow(), name=f"instances {self.endpoint.path}")
        self.runtime.add_closer(self.close)

    async def _follow(self) -> None:
        async for event in self.runtime.etcd.watch_prefix(self.endpoint.prefix):
            self._apply(event.kind, event.key, event.value)

    def _apply(self, kind: str, key: str, value: bytes) -> None:
        instance_id = instance_id_of(key)
        if kind == "put":
            try:
                self._instances[instance_id] = InstanceRecord.parse(value)
            except (ValueError, KeyError) as e:
                log.warning("ignoring instance %x of %s: %s", instance_id, self.endpoint.path, e)
                return
        elif self._instances.pop(instance_id, None) is not None:
            for callback in self.on_instance_removed:
                callback(instance_id)
        self._down.pop(instance_id, None)
        self._changed.set()

    async def close(self) -> None:
        """Stop following the instances, and run the `on_close` hooks."""
        if self._watch is not None:
            await stop_tasks([self._watch])
            self._watch = None
            self.runtime.remove_closer(self.close)
        hooks, self.on_close = self.on_close, []
        for hook in hooks:
            try:
                await hook()
            except Exception:  # one failing hook must not keep the others from running
                log.exception("closing %s: a close hook failed", self.endpoint.path)

    def limit_to(self, instance_ids: Iterable[int] | None) -> None:
        """Route only to these instances (None: to all of the endpoint's).

        Several models can share one endpoint, each worker serving one of them: a model's
        client must then reach only the workers that registered that model.
        """
        self._allowed = None if instance_ids is None else frozenset(instance_ids)
        self._changed.set()

    def _routable(self, instance_id: int) -> bool:
        return instance_id in self._instances and (
            self._allowed is None or instance_id in self._allowed
        )

    def instance_ids(self) -> list[int]:
        now = time.monotonic()
        return sorted(
            i for i in self._instances if self._routable(i) and self._down.get(i, 0.0) <= now
        )

    async def wait_for_instances(self, timeout: float | None = None) -> list[int]:  # noqa: ASYNC109 - upstream's signature
        """Wait until at least one instance is routable (a new one, or one marked down whose
        back-off ended); `TimeoutError` after `timeout` seconds."""

        async def wait() -> list[int]:
            while not self.instance_ids():
                self._changed.clear()
                retry_at = min(self._down.values(), default=None)
                if retry_at is None:
                    await self._changed.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._changed.wait(), max(0.0, retry_at - time.monotonic())
                        )
            return self.instance_ids()

        return await asyncio.wait_for(wait(), timeout)

    def mark_down(self, instance_id: int) -> None:
        """Route around an instance that stopped answering, for a few seconds.

        A dead worker's etcd key stays until its lease expires (10 s); a worker cut off from
        NATS for a moment comes back. Retrying it after a short back-off handles both.
        """
        if instance_id in self._instances:
            self._down[instance_id] = time.monotonic() + MARK_DOWN_SECONDS
            log.warning(
                "instance %x of %s is not answering; routing around it",
                instance_id,
                self.endpoint.path,
            )

    # -- routing ------------------------------------------------------------------------

    def _pick(self, mode: str, exclude: set[int]) -> int:
        ids = [i for i in self.instance_ids() if i not in exclude]
        if not ids:
            raise NoInstancesError(self.endpoint.path)
        if self.instance_capacity is not None:
            ids = [i for i in ids if self._busy[i] < self.instance_capacity] or ids
        if mode == "random":
            return random.choice(ids)
        if mode in LOAD_MODES:
            return pick_by_load(mode, ids, self._busy)
        self._rr += 1
        return ids[self._rr % len(ids)]

    def random(self, request: Any, context: Context | None = None) -> _Stream:
        return _Stream(self.stream(request, context or Context(), mode="random"))

    def round_robin(self, request: Any, context: Context | None = None) -> _Stream:
        return _Stream(self.stream(request, context or Context()))

    def generate(self, request: Any, context: Context | None = None) -> _Stream:
        return self.round_robin(request, context)

    def direct(self, request: Any, instance_id: int, context: Context | None = None) -> _Stream:
        return _Stream(self.stream(request, context or Context(), instance_id=instance_id))

    def stream(
        self,
        request: Any,
        context: Context,
        *,
        instance_id: int | None = None,
        mode: str = "round-robin",
        pick: Callable[[set[int]], int] | None = None,
        errors: Callable[[Exception], Exception] | None = None,
    ) -> AsyncIterator[Any]:
        """The response stream of one request: to `instance_id` if given (no retry elsewhere),
        else to the instance `pick(excluded_ids)` chooses, else by `mode` (`round-robin`,
        `random`, `least-loaded` or `power-of-two`: `dynamo.runtime.load_balance`). Without
        `instance_id`, an instance gone before it answered is retried on another. The one
        streaming entry the upstream-shaped methods above wrap.

        `errors` maps the stream's exceptions to the caller's own (returning one unchanged
        re-raises it as it was): a caller that would otherwise wrap the stream in a generator
        of its own only to translate them (the LLM layer's `RouterEngine`) adds no layer that
        every item passes through."""
        return self._streamed(request, context, instance_id, mode, pick, errors)

    async def _streamed(
        self,
        request: Any,
        context: Context,
        instance_id: int | None,
        mode: str,
        pick: Callable[[set[int]], int] | None,
        errors: Callable[[Exception], Exception] | None,
    ) -> AsyncIterator[Any]:
        """`stream`, in one generator: every item of a response passes through each layer of
        generators between the request plane and the HTTP writer, so routing, the retry before
        the first item and the in-flight count share one."""
        try:
            tried: set[int] = set()
            if instance_id is None and not self.instance_ids():
                # A model is announced just before its worker starts serving: give it a moment.
                try:
                    await self.wait_for_instances(NO_INSTANCE_WAIT_SECONDS)
                except TimeoutError:
                    raise NoInstancesError(self.endpoint.path) from None
            while True:
                if instance_id is not None:
                    if not self._routable(instance_id):
                        raise UnknownInstanceError(self.endpoint.path, instance_id)
                    target = instance_id
                else:
                    target = pick(tried) if pick is not None else self._pick(mode, tried)
                record = self._instances[target]
                # Each worker by the request plane its record names.
                if record.transport == "tcp":
                    responses = self.runtime.tcp_client.stream(
                        record.address, target, request, context
                    )
                else:
                    responses = stream_request(
                        self.runtime.nats, record.address, target, request, context
                    )
                self._busy[target] += 1
                streamed = False
                try:
                    async for item in responses:
                        streamed = True
                        yield item
                    return
                except InstanceGoneError:
                    self.mark_down(target)
                    if streamed or instance_id is not None:
                        raise
                    # Gone before it answered: another instance (not with an instance named).
                    tried.add(target)
                    log.info(
                        "retrying request %s on another instance of %s",
                        context.id(),
                        self.endpoint.path,
                    )
                finally:
                    try:
                        # Now, not when the collector finds it: a stream left early stops its
                        # worker at once.
                        await responses.aclose()  # type: ignore[attr-defined]
                    finally:
                        self._busy[target] -= 1
                        if not self._busy[target]:
                            del self._busy[target]
        except Exception as e:
            mapped = e if errors is None else errors(e)
            if mapped is e:
                raise
            raise mapped from None
