"""`dynamo-run in=INPUT out=ENGINE`: the engine in this process, behind the input."""

from __future__ import annotations

from dynamo.frontend.modes.inputs import run_input
from dynamo.frontend.run_config import RunConfig


async def run_local(config: RunConfig) -> None:
    """Start the engine, serve it on the input, close it when the input ends."""
    from dynamo.frontend.default_engine import default_engine
    from dynamo.frontend.local_model import served_model, start_engine

    engine_name = config.output or default_engine(config.model_path)
    started = await start_engine(engine_name, config)
    try:
        model = served_model(started, config)
        await run_input(config, model, ignore_eos=engine_name == "echo_core")
    finally:
        await started.engine.close()
