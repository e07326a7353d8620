"""`dynamo-run in=http out=dyn` (and `python -m dynamo.frontend`): serve every model found in etcd."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from dynamo.frontend.admission import AdmittedEngine
from dynamo.frontend.gc_freeze import freeze_long_lived
from dynamo.frontend.http.app import AppState
from dynamo.frontend.model_manager import ModelManager
from dynamo.frontend.modes.inputs import app_state, run_input
from dynamo.frontend.run_config import RunConfig
from dynamo.llm.discovery import DiscoveredModel, ModelWatcher
from dynamo.llm.migration import Migration
from dynamo.llm.model_type import ModelType
from dynamo.llm.pipeline import AsyncEngine, ServedModel
from dynamo.llm.postprocess import OutputParsers, parsers_for
from dynamo.llm.router_engine import RouterEngine
from dynamo.llm.served import served_model
from dynamo.runtime import DistributedRuntime

log = logging.getLogger(__name__)


def served_from_discovery(
    model: DiscoveredModel,
    engine: RouterEngine,
    migration_limit: int | None = None,
    on_migrate: Callable[[str], None] | None = None,
    parsers: OutputParsers | None = None,
) -> ServedModel:
    """The model as the HTTP layer serves it. Token-level (Backend) models get request migration:
    `migration_limit` (the frontend's `--migration-limit`) or else the worker's card's."""
    served_engine: AsyncEngine = engine
    if model.model_type is ModelType.Backend:
        limit = model.card.migration_limit if migration_limit is None else migration_limit
        if limit > 0:
            hook = None if on_migrate is None else (lambda: on_migrate(model.name))
            served_engine = Migration(engine, limit, hook)
    return served_model(
        model.name,
        model.model_type,
        model.card,
        served_engine,
        also_serves=model.serves,
        parsers=parsers,
    )


async def router_for(
    runtime: DistributedRuntime, model: DiscoveredModel, config: RunConfig
) -> RouterEngine:
    """The model's engine: the KV router for Backend models under `--router-mode kv` (KV routing
    needs token ids, which only Backend models have; others go round-robin), else the client's
    own choice by `--router-mode` (round-robin, random, least-loaded, power-of-two)."""
    if config.router_mode == "kv" and model.model_type is ModelType.Backend:
        # Imported here: the KV package is a few percent of a frontend's start, and only this
        # router mode uses it.
        from dynamo.frontend.kv_routing import start_kv_router
        from dynamo.llm.kv.indexer import DEFAULT_MAX_BLOCKS

        return await start_kv_router(
            runtime,
            model,
            config.kv_overlap_score_weight,
            config.router_temperature,
            config.kv_index_max_blocks or DEFAULT_MAX_BLOCKS,
            config.router_cost or "predicted",
        )
    if config.router_mode == "kv":
        log.warning("model '%s' takes text, not tokens: routing it round-robin", model.name)
        return RouterEngine(model.client, "round-robin")
    return RouterEngine(model.client, config.router_mode)


async def watch_models(
    runtime: DistributedRuntime,
    models: ModelManager,
    config: RunConfig,
    on_migrate: Callable[[str], None] | None = None,
) -> ModelWatcher:
    async def added(model: DiscoveredModel) -> None:
        engine = await router_for(runtime, model, config)
        # A worker whose engine runs a fixed number of sequences publishes it (upstream's
        # runtime_config.max_num_seqs): the router sends no worker more than that.
        capacity = model.card.runtime_config.get("max_num_seqs")
        if isinstance(capacity, int) and capacity > 0:
            model.client.instance_capacity = capacity
        # The frontend's parser flags win over the ones the worker published on its card.
        parsers = parsers_for(model.card, config.tool_call_parser, config.reasoning_parser)
        models.add(
            served_from_discovery(model, engine, config.migration_limit, on_migrate, parsers),
            model.aliases,
        )
        freeze_long_lived()  # its tokenizer and template: long-lived from now on

    async def removed(name: str) -> None:
        models.remove(name)

    watcher = ModelWatcher(runtime, added, removed)
    watcher.start()
    return watcher


def register_kv_metrics(state: AppState) -> None:
    """The KV routers' metrics and their workers' load reports on `/metrics`, read from the
    served models at scrape time."""
    from dynamo.frontend.kv_metrics import KvRouterCollector, WorkerLoadCollector
    from dynamo.frontend.kv_routing import KvRouterEngine

    def engines():
        for name in state.models.names():
            engine = getattr(state.models.get(name), "engine", None)
            # Admission control and migration wrap the router: look through them.
            while isinstance(engine, AdmittedEngine | Migration):
                engine = engine.engine
            if isinstance(engine, KvRouterEngine):
                yield name, engine

    def routers():
        for name, engine in engines():
            yield name, engine.router, engine.client.instance_ids()

    def loads():
        for name, engine in engines():
            yield name, engine.loads, engine.client.instance_ids()

    state.metrics.registry.register(KvRouterCollector(routers, state.metrics.prefix))
    state.metrics.registry.register(WorkerLoadCollector(loads, state.metrics.prefix))


async def run_discovering(config: RunConfig) -> None:
    runtime = DistributedRuntime(config=config.runtime)
    await runtime.ensure_connected()
    state = app_state(config)
    if config.router_mode == "kv":
        register_kv_metrics(state)
    watcher = await watch_models(runtime, state.models, config, state.metrics.on_migration)
    try:
        if config.input == "http":
            from dynamo.frontend.http.server import serve_http

            await serve_http(state, config.http_host, config.http_port)
            return
        log.info("waiting for a model to appear in etcd ...")
        while not len(state.models):  # noqa: ASYNC110 - the watcher fills it from another task
            await asyncio.sleep(0.1)
        model = state.models.get(state.models.names()[0])
        await run_input(config, model, ignore_eos=False)
    finally:
        await watcher.stop()
        await runtime.close()
