"""The three ways `dynamo-run` runs, one module each, chosen by `run_mode`:

- `local`     `in=INPUT out=ENGINE`: the engine in this process, behind the input
- `frontend`  `in=INPUT out=dyn`: the input in front of the models workers announce in etcd
- `worker`    `in=dyn://ns.comp.ep out=ENGINE`: the engine served as a distributed worker

`inputs` runs an input against one served model (local and frontend share it). No mode imports
the CLI: the CLI parses and checks the command line into a `RunConfig`, then calls `run_mode`.
"""

from __future__ import annotations

from dynamo.frontend.run_config import Mode, RunConfig


async def run_mode(config: RunConfig) -> None:
    """Run the mode `config` names until it ends. `config` is read, never changed."""
    if config.mode is Mode.WORKER:
        from dynamo.frontend.modes.worker import run_worker

        await run_worker(config)
    elif config.mode is Mode.FRONTEND:
        from dynamo.frontend.modes.frontend import run_discovering

        await run_discovering(config)
    else:
        from dynamo.frontend.modes.local import run_local

        await run_local(config)


__all__ = ["run_mode"]
