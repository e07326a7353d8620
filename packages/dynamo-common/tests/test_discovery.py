"""`ModelWatcher`: models appear with their first worker and go with their last, cards and all."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from dynamo.llm import ModelType, register_llm
from dynamo.llm.discovery import ModelAdded, ModelRemoved, ModelWatcher
from dynamo.llm.register import upload_card_files
from dynamo.runtime import DistributedRuntime, RuntimeConfig
from dynamo.testing import EtcdServer, NatsServer

pytestmark = pytest.mark.integration


class Worker:
    """A worker in this process: its own runtime (own lease), a model, a trivial handler."""

    def __init__(self, path: str):
        self.path = path
        self.runtime = DistributedRuntime()
        self.serving: asyncio.Task | None = None

    async def start(self, model_type: ModelType, name: str, **kw) -> None:
        await self.runtime.ensure_connected()
        endpoint = self.runtime.endpoint(self.path)
        await register_llm(model_type, endpoint, kw.pop("model_path", None), name, **kw)

        async def handler(request):
            yield {"token_ids": [1]}

        self.serving = asyncio.create_task(endpoint.serve_endpoint(handler))

    async def stop(self) -> None:
        self.runtime.shutdown()
        if self.serving is not None:
            await self.serving
        await self.runtime.close()


@contextlib.asynccontextmanager
async def watching(runtime_env):
    runtime = DistributedRuntime()
    await runtime.ensure_connected()
    watcher = ModelWatcher(runtime)
    events = watcher.events()
    try:
        yield watcher, events
    finally:
        await events.aclose()
        await watcher.stop()
        await runtime.close()


async def next_event(events, within: float = 15.0):
    return await asyncio.wait_for(anext(events), within)


async def test_model_comes_with_its_first_worker_and_goes_with_its_last(
    runtime_env, smollm2_gguf, smollm2_card
):
    first, second = Worker("disc.backend.generate"), Worker("disc.backend.generate")
    async with watching(runtime_env) as (watcher, events):
        await first.start(ModelType.Backend, "smol-disc", model_path=str(smollm2_gguf))
        added = await next_event(events)
        assert isinstance(added, ModelAdded)
        assert (added.name, added.model_type, added.endpoint_path) == (
            "smol-disc",
            ModelType.Backend,
            "disc.backend.generate",
        )
        # The card was rebuilt from etcd and the object store: the same tokenizer and template.
        assert added.card.tokenizer_json == smollm2_card.tokenizer_json
        assert added.card.chat_template == smollm2_card.chat_template
        assert added.card.eos_token_ids == smollm2_card.eos_token_ids
        assert added.card.tokenizer().encode("hello world").ids == (
            smollm2_card.tokenizer().encode("hello world").ids
        )
        client = watcher.models["smol-disc"].client
        await client.wait_for_instances(15)
        assert [item async for item in client.round_robin({})] == [{"token_ids": [1]}]

        await second.start(ModelType.Backend, "smol-disc", card=smollm2_card)
        await first.stop()  # one worker left: the model stays, and so does its card
        async with watching(runtime_env) as (_, late_events):
            late = await next_event(late_events)
            assert late.name == "smol-disc" and late.card.tokenizer_json is not None
        await second.stop()
        removed = await next_event(events)
        assert removed == ModelRemoved("smol-disc")
        assert watcher.models == {}


async def test_several_models_and_callbacks(runtime_env):
    added: list[str] = []
    removed: list[str] = []
    gone = asyncio.Event()

    async def on_added(model) -> None:
        added.append(model.name)

    async def on_removed(name: str) -> None:
        removed.append(name)
        gone.set()

    runtime = DistributedRuntime()
    await runtime.ensure_connected()
    watcher = ModelWatcher(runtime, on_added, on_removed)
    watcher.start()
    chat, completion = Worker("multi.chat.generate"), Worker("multi.completion.generate")
    try:
        await chat.start(ModelType.Chat, "model-a")
        await completion.start(ModelType.Completion, "model-b")
        async with asyncio.timeout(15):
            while len(added) < 2:  # noqa: ASYNC110 - filled by the watcher's task
                await asyncio.sleep(0.05)
        assert sorted(added) == ["model-a", "model-b"]
        assert watcher.models["model-a"].model_type is ModelType.Chat
        assert watcher.models["model-b"].endpoint_path == "multi.completion.generate"
        await chat.stop()
        await asyncio.wait_for(gone.wait(), 15)
        assert removed == ["model-a"] and list(watcher.models) == ["model-b"]
    finally:
        await completion.stop()
        await watcher.stop()
        await runtime.close()


async def test_card_files_come_back_after_nats_loses_its_data(smollm2_card):
    with EtcdServer() as etcd, NatsServer() as nats:
        config = RuntimeConfig((etcd.url,), nats.url)
        worker = DistributedRuntime(config=config)
        frontend = DistributedRuntime(config=config)
        try:
            await worker.ensure_connected()
            endpoint = worker.endpoint("wipe.backend.generate")
            await register_llm(ModelType.Backend, endpoint, None, "wiped", card=smollm2_card)
            # NATS comes back without its JetStream data: the object store bucket is gone.
            await asyncio.to_thread(nats.restart, wipe=True, down_for=0.5)
            await frontend.ensure_connected()
            watcher = ModelWatcher(frontend)
            events = watcher.events()
            added = await next_event(events, within=30)
            assert added.name == "wiped"
            assert added.card.tokenizer_json == smollm2_card.tokenizer_json
            await events.aclose()
            await watcher.stop()
        finally:
            await frontend.close()
            await worker.close()


async def test_a_card_whose_files_are_being_replaced_holds_up_no_model(runtime_env, smollm2_card):
    """Every worker of a model uploads the same card files; nats-py's object `put` purges the
    chunks of the meta it replaces. A frontend that read the old meta just before waited for
    those chunks forever, holding up every model after it. Here the purge is done directly:
    the frontend finds a meta whose chunks are gone."""
    stuck, free = Worker("held.backend.generate"), Worker("free.backend.generate")
    await stuck.start(ModelType.Backend, "held", card=smollm2_card)
    js = stuck.runtime.nats.jetstream()
    bucket = "held"  # the card's bucket: its service name, the slug of the model's name
    store = await js.object_store(bucket)
    info = await store.get_info("tokenizer.json")
    await js.purge_stream(f"OBJ_{bucket}", subject=f"$O.{bucket}.C.{info.nuid}")
    async with watching(runtime_env) as (watcher, events):
        await free.start(ModelType.Chat, "free")
        assert (await next_event(events, within=30)).name == "free"
        assert "held" not in watcher.models
        # Another worker of the model uploads the files again: the model comes.
        await upload_card_files(stuck.runtime.objects(), bucket, smollm2_card)
        added = await next_event(events, within=30)
        assert added.name == "held"
        assert added.card.tokenizer_json == smollm2_card.tokenizer_json
    await free.stop()
    await stuck.stop()


async def test_a_model_the_frontend_failed_to_take_is_offered_again(runtime_env):
    """`on_added` failing once (the frontend could not set up the model's router): the retry
    offers the model again, and the watcher knows it only once it was taken."""
    offered: list[str] = []
    taken = asyncio.Event()

    async def on_added(model) -> None:
        offered.append(model.name)
        if len(offered) == 1:
            assert "flaky" not in watcher.models
            raise RuntimeError("no router for it yet")
        taken.set()

    runtime = DistributedRuntime()
    await runtime.ensure_connected()
    watcher = ModelWatcher(runtime, on_added)
    watcher.start()
    worker = Worker("flaky.backend.generate")
    try:
        await worker.start(ModelType.Chat, "flaky")
        await asyncio.wait_for(taken.wait(), 15)
        assert offered == ["flaky", "flaky"]
        assert list(watcher.models) == ["flaky"]
    finally:
        await worker.stop()
        await watcher.stop()
        await runtime.close()
