"""`dynamo-run in=INPUT out=ENGINE`: the engine in this process, behind the input."""

from __future__ import annotations

from dynamo.frontend.flags import Invocation
from dynamo.frontend.modes.inputs import run_input


async def run_local(inv: Invocation) -> None:
    """Start the engine, serve it on the input, close it when the input ends."""
    from dynamo.frontend.default_engine import default_engine
    from dynamo.frontend.local_model import served_model, start_engine

    args = inv.args
    engine_name = inv.output or default_engine(args.model_path)
    cls, engine, card, name = await start_engine(engine_name, args)
    try:
        model = served_model(cls, engine, card, name)
        await run_input(inv, model, ignore_eos=engine_name == "echo_core")
    finally:
        await engine.close()
