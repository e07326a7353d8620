"""The three ways `dynamo-run` runs, one module each, chosen by `run_mode`:

- `local`     `in=INPUT out=ENGINE`: the engine in this process, behind the input
- `frontend`  `in=INPUT out=dyn`: the input in front of the models workers announce in etcd
- `worker`    `in=dyn://ns.comp.ep out=ENGINE`: the engine served as a distributed worker

`inputs` runs an input against one served model (local and frontend share it). No mode imports
the CLI: the CLI parses and checks the command line, then calls `run_mode`.
"""

from __future__ import annotations

from dynamo.frontend.flags import Invocation


async def run_mode(inv: Invocation) -> None:
    """Run the mode `inv` asks for until it ends."""
    if inv.input.startswith("dyn://"):
        from dynamo.frontend.modes.worker import run_worker

        await run_worker(inv)
    elif inv.output == "dyn":
        from dynamo.frontend.modes.frontend import run_discovering

        await run_discovering(inv)
    else:
        from dynamo.frontend.modes.local import run_local

        await run_local(inv)


__all__ = ["run_mode"]
