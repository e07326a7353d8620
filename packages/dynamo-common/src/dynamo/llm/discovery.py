"""`ModelWatcher`: follows `models/` in etcd and tells the frontend when models come and go.

A model is *added* when the first worker entry for its name appears and *removed* when the last
one goes (lease revoked on shutdown, or expired after a crash). Its card is rebuilt from the
`mdc/` key and the NATS object store, so the frontend needs no local copy of the model.

A model's other names (`--served-model-name a b` on its workers: `b`) come with its entry: they
are the first worker's; a later worker publishing others is logged and keeps to the first set.

Several models may share one endpoint (each worker serving one): a model's client routes only to
the instances whose entries name that model, never to a worker of another model.

Two ways to listen: callbacks (`ModelWatcher(runtime, on_added, on_removed).start()`), or
`async for event in watcher.events()` yielding `ModelAdded` / `ModelRemoved`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.model_type import ModelType
from dynamo.llm.schema import (
    MODELS_ROOT,
    ModelEntry,
    instance_id_of_model_entry,
    parse_card_record,
)
from dynamo.runtime.backoff import Backoff
from dynamo.runtime.tasks import stop_tasks

if TYPE_CHECKING:
    from dynamo.runtime import Client, DistributedRuntime

log = logging.getLogger(__name__)

# A card key can be missing for a moment: its last writer just left and another worker of the
# model is putting it back.
_CARD_ATTEMPTS = 10
_CARD_RETRY_SECONDS = 0.2


@dataclass
class DiscoveredModel:
    """A model with at least one live worker: its card, type, and a client for its endpoint."""

    name: str
    model_type: ModelType
    card: ModelDeploymentCard
    client: Client
    endpoint_path: str = ""
    entry_keys: set[str] = field(default_factory=set)
    #: Every request kind the workers take (`ModelEntry.serves`): the type and `also_serves`.
    serves: frozenset[ModelType] = frozenset()
    #: The model's other names (its entry's `aliases`); `name` is the canonical one.
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.serves = self.serves or frozenset({self.model_type})

    def route_to_entries(self) -> None:
        """Point the client at the instances whose entries name this model. An entry key that
        names no instance (not written by us) leaves the client on the whole endpoint."""
        ids = [instance_id_of_model_entry(key) for key in self.entry_keys]
        known = [i for i in ids if i is not None]
        self.client.limit_to(known if len(known) == len(ids) else None)


@dataclass(frozen=True)
class ModelAdded:
    """The first worker of a model appeared. `endpoint_path` is `ns.comp.ep`."""

    name: str
    model_type: ModelType
    card: ModelDeploymentCard
    endpoint_path: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelRemoved:
    """The last worker of a model went away."""

    name: str


ModelEvent = ModelAdded | ModelRemoved
OnAdded = Callable[[DiscoveredModel], Awaitable[None]]
OnRemoved = Callable[[str], Awaitable[None]]


async def fetch_card(runtime: DistributedRuntime, mdc_key: str) -> ModelDeploymentCard:
    """Rebuild a card from etcd and the object store, with no local copy of the model."""
    raw = None
    for _ in range(_CARD_ATTEMPTS):
        raw = await runtime.etcd.get(mdc_key)
        if raw is not None:
            break
        await asyncio.sleep(_CARD_RETRY_SECONDS)
    if raw is None:
        raise LookupError(f"model card {mdc_key} is not in etcd")
    fields, files = parse_card_record(raw)
    if "tokenizer.json" in files:
        bucket, name = files["tokenizer.json"]
        fields["tokenizer_json"] = (await runtime.objects().get(bucket, name)).decode()
    return ModelDeploymentCard.from_json(orjson.dumps(fields))


class ModelWatcher:
    """Keeps `models` (name → `DiscoveredModel`) in step with etcd, and reports the changes."""

    def __init__(
        self,
        runtime: DistributedRuntime,
        on_added: OnAdded | None = None,
        on_removed: OnRemoved | None = None,
    ):
        self.runtime = runtime
        self.on_added = on_added
        self.on_removed = on_removed
        self.models: dict[str, DiscoveredModel] = {}
        self._key_to_model: dict[str, str] = {}
        self._listeners: list[asyncio.Queue[ModelEvent]] = []
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._pending: dict[str, asyncio.Task] = {}  # entries whose card could not be fetched

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="model-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task, *self._pending.values()])
            self._task = None
            self._pending.clear()
        for model in self.models.values():
            await model.client.close()

    async def events(self) -> AsyncIterator[ModelEvent]:
        """The models there now (as `ModelAdded`), then every change. Starts the watcher."""
        queue: asyncio.Queue[ModelEvent] = asyncio.Queue()
        for model in self.models.values():
            queue.put_nowait(
                ModelAdded(
                    model.name, model.model_type, model.card, model.endpoint_path, model.aliases
                )
            )
        self._listeners.append(queue)
        self.start()
        try:
            while True:
                yield await queue.get()
        finally:
            self._listeners.remove(queue)

    async def _run(self) -> None:
        async for event in self.runtime.etcd.watch_prefix(f"{MODELS_ROOT}/"):
            try:
                async with self._lock:
                    if event.kind == "put":
                        self._pending.pop(event.key, None)
                        await self._put(event.key, ModelEntry.parse(event.value))
                    else:
                        self._pending.pop(event.key, None)
                        await self._delete(event.key)
            except Exception as e:
                if event.kind != "put":
                    log.exception("could not remove model entry %s", event.key)
                    continue
                log.warning("model entry %s is not usable yet (%s); retrying", event.key, e)
                with contextlib.suppress(orjson.JSONDecodeError, KeyError, ValueError):
                    self._retry_later(event.key, ModelEntry.parse(event.value))

    def _retry_later(self, key: str, entry: ModelEntry) -> None:
        """A card that cannot be fetched now (object store not ready) is tried again, with
        back-off, for as long as its entry exists."""
        if key in self._pending:
            return
        self._pending[key] = asyncio.create_task(self._retry(key, entry), name=f"retry {key}")

    async def _retry(self, key: str, entry: ModelEntry) -> None:
        backoff = Backoff(first=0.5, cap=5.0)
        while True:
            await backoff.sleep()
            async with self._lock:
                if self._pending.get(key) is not asyncio.current_task():
                    return
                try:
                    await self._put(key, entry)
                except Exception as e:
                    log.debug("model entry %s still not usable: %s", key, e)
                    continue
                del self._pending[key]
                return

    async def _put(self, key: str, entry: ModelEntry) -> None:
        name = entry.name
        if key in self._key_to_model:
            return
        path = entry.endpoint_path
        model = self.models.get(name)
        if model is not None:
            if path != model.endpoint_path:
                log.warning(
                    "model '%s' is served on %s already; ignoring its workers on %s",
                    name,
                    model.endpoint_path,
                    path,
                )
                return
            if entry.aliases != model.aliases:
                log.warning(
                    "a worker of model '%s' names it also %s; serving the first worker's "
                    "aliases (%s)",
                    name,
                    list(entry.aliases),
                    list(model.aliases),
                )
            model.entry_keys.add(key)
            model.route_to_entries()
            self._key_to_model[key] = name
            return
        card = await fetch_card(self.runtime, entry.mdc)
        client = await self.runtime.endpoint(path).client()
        model = DiscoveredModel(
            name, entry.model_type, card, client, path, serves=entry.serves(), aliases=entry.aliases
        )
        model.entry_keys.add(key)
        model.route_to_entries()
        # Known only once `on_added` took it: had it failed, the retry would find the model
        # known already and never hand it on, and the frontend would never serve it.
        try:
            if self.on_added is not None:
                await self.on_added(model)
        except BaseException:
            await client.close()
            raise
        self.models[name] = model
        self._key_to_model[key] = name
        log.info(
            "model '%s'%s is available (%s on %s)",
            name,
            f" (also {', '.join(model.aliases)})" if model.aliases else "",
            model.model_type.value,
            path,
        )
        self._notify(ModelAdded(name, model.model_type, card, path, model.aliases))

    async def _delete(self, key: str) -> None:
        name = self._key_to_model.pop(key, None)
        if name is None:
            return
        model = self.models[name]
        model.entry_keys.discard(key)
        if model.entry_keys:
            model.route_to_entries()
            return
        del self.models[name]
        await model.client.close()
        log.info("model '%s' has no workers left", name)
        if self.on_removed is not None:
            await self.on_removed(name)
        self._notify(ModelRemoved(name))

    def _notify(self, event: ModelEvent) -> None:
        for queue in self._listeners:
            queue.put_nowait(event)
