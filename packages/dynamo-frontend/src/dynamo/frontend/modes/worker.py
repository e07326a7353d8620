"""`dynamo-run in=dyn://ns.comp.ep out=<engine> MODEL`: serve an engine as a distributed worker."""

from __future__ import annotations

import logging

from dynamo.frontend.flags import parse_dyn_path
from dynamo.frontend.local_model import start_engine
from dynamo.frontend.run_config import RunConfig
from dynamo.llm.kv.engine_publishers import attach_publishers
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.register import register_llm
from dynamo.runtime.distributed import DistributedRuntime, install_shutdown_signals

log = logging.getLogger(__name__)


async def run_worker(config: RunConfig) -> None:
    if config.output is None:
        from dynamo.frontend.default_engine import default_engine

        engine_name = default_engine(config.model_path)
    else:
        engine_name = config.output
    namespace, component_name, endpoint_name = parse_dyn_path(config.input)
    # Signals first: a SIGTERM while connecting or loading the model is a clean stop too.
    runtime = DistributedRuntime(config=config.runtime)
    install_shutdown_signals(runtime)
    engine = None
    publishers = None
    try:
        if not await runtime.connect_unless_stopped():
            return
        worker_id = await runtime.primary_lease()
        component = runtime.namespace(namespace).component(component_name)
        await component.create_service()
        endpoint = component.endpoint(endpoint_name)
        started = await start_engine(engine_name, config, distributed=True)
        cls, engine, card, name = started.cls, started.engine, started.card, started.name
        if runtime.shutting_down.is_set():
            return
        # The worker, not the engine, builds the publishers, as this model's instance.
        publishers = await attach_publishers(engine, component, worker_id)
        await register_llm(
            cls.model_type,
            endpoint,
            started.model_path,
            name,
            card=card or ModelDeploymentCard.for_name_only(name),
            migration_limit=config.migration_limit,
            also_serves=cls.also_serves,
            aliases=config.model_aliases,
        )
        await endpoint.serve_endpoint(engine.generate)
    finally:
        # The engine stops first: until then it feeds its publishers, and the runtime's closers
        # would close the load publisher under it. serve_endpoint has deregistered already.
        if engine is not None:
            await engine.close()
        if publishers is not None:
            await publishers.close()
        await runtime.close()
    log.info("worker stopped")
