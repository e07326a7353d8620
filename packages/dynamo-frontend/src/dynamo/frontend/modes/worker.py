"""`dynamo-run in=dyn://ns.comp.ep out=<engine> MODEL`: serve an engine as a distributed worker."""

from __future__ import annotations

import logging

from dynamo.frontend.flags import Invocation, parse_dyn_path
from dynamo.frontend.local_model import start_engine
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.register import register_llm
from dynamo.runtime.distributed import DistributedRuntime, install_shutdown_signals

log = logging.getLogger(__name__)


async def run_worker(inv: Invocation) -> None:
    if inv.output is None:
        from dynamo.frontend.default_engine import default_engine

        inv.output = default_engine(inv.args.model_path)
    namespace, component_name, endpoint_name = parse_dyn_path(inv.input)
    # Signals first: a SIGTERM while connecting or loading the model is a clean stop too.
    runtime = DistributedRuntime()
    install_shutdown_signals(runtime)
    engine = None
    try:
        if not await runtime.connect_unless_stopped():
            return
        # The lease (instance id) exists before the engine starts, so an engine that publishes
        # KV events or metrics can name itself from `EngineConfig.endpoint.lease_id()`.
        await runtime.primary_lease()
        component = runtime.namespace(namespace).component(component_name)
        await component.create_service()
        endpoint = component.endpoint(endpoint_name)
        cls, engine, card, name = await start_engine(inv.output, inv.args, endpoint=endpoint)
        if runtime.shutting_down.is_set():
            return
        await register_llm(
            cls.model_type,
            endpoint,
            inv.args.model_path,
            name,
            card=card or ModelDeploymentCard.for_name_only(name),
            migration_limit=inv.args.migration_limit,
            also_serves=cls.also_serves,
        )
        await endpoint.serve_endpoint(engine.generate)
    finally:
        # The engine stops first: until then it may feed a publisher that the runtime's closers
        # would close under it. serve_endpoint has deregistered already.
        if engine is not None:
            await engine.close()
        await runtime.close()
    log.info("worker stopped")
