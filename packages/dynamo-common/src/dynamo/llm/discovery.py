"""`ModelWatcher`: follows `models/` in etcd and tells the frontend when models come and go."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.model_type import ModelType
from dynamo.llm.register import MODELS_ROOT

if TYPE_CHECKING:
    from dynamo.runtime import Client, DistributedRuntime

log = logging.getLogger(__name__)


@dataclass
class DiscoveredModel:
    """A model with at least one live worker: its card, type, and a client for its endpoint."""

    name: str
    model_type: ModelType
    card: ModelDeploymentCard
    client: Client
    entry_keys: set[str] = field(default_factory=set)


OnAdded = Callable[[DiscoveredModel], Awaitable[None]]
OnRemoved = Callable[[str], Awaitable[None]]


async def fetch_card(runtime: DistributedRuntime, mdc_key: str) -> ModelDeploymentCard:
    """Rebuild a card from etcd and the object store, with no local copy of the model."""
    raw = await runtime.etcd.get(mdc_key)
    if raw is None:
        raise LookupError(f"model card {mdc_key} is not in etcd")
    fields = orjson.loads(raw)
    files = fields.pop("files", {}) or {}
    if "tokenizer.json" in files:
        bucket = files["tokenizer.json"].removeprefix("nats://").split("/", 1)[0]
        store = await runtime.nats.jetstream().object_store(bucket)
        fields["tokenizer_json"] = (await store.get("tokenizer.json")).data.decode()
    known = {k: v for k, v in fields.items() if k in ModelDeploymentCard.__dataclass_fields__}
    return ModelDeploymentCard(**known)


class ModelWatcher:
    def __init__(self, runtime: DistributedRuntime, on_added: OnAdded, on_removed: OnRemoved):
        self.runtime = runtime
        self.on_added = on_added
        self.on_removed = on_removed
        self.models: dict[str, DiscoveredModel] = {}
        self._key_to_model: dict[str, str] = {}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="model-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async for event in self.runtime.etcd.watch_prefix(f"{MODELS_ROOT}/"):
            try:
                if event.kind == "put":
                    await self._put(event.key, orjson.loads(event.value))
                else:
                    await self._delete(event.key)
            except Exception:
                log.exception("could not apply model event for %s", event.key)

    async def _put(self, key: str, entry: dict) -> None:
        name = entry["name"]
        if key in self._key_to_model:
            return
        model = self.models.get(name)
        if model is None:
            ep = entry["endpoint"]
            endpoint = (
                self.runtime.namespace(ep["namespace"])
                .component(ep["component"])
                .endpoint(ep["name"])
            )
            card = await fetch_card(self.runtime, entry.get("mdc") or "")
            model = DiscoveredModel(
                name, ModelType.parse(entry["model_type"]), card, await endpoint.client()
            )
            self.models[name] = model
            model.entry_keys.add(key)
            self._key_to_model[key] = name
            log.info("model '%s' is available (%s)", name, model.model_type.value)
            await self.on_added(model)
            return
        model.entry_keys.add(key)
        self._key_to_model[key] = name

    async def _delete(self, key: str) -> None:
        name = self._key_to_model.pop(key, None)
        if name is None:
            return
        model = self.models[name]
        model.entry_keys.discard(key)
        if not model.entry_keys:
            del self.models[name]
            await model.client.close()
            log.info("model '%s' has no workers left", name)
            await self.on_removed(name)
