"""Dynamo-Py's shared test helpers (private: never published, in no image).

The pytest plugin (`dynamo.testing.plugin`, loaded by its `pytest11` entry point) turns them into
fixtures; tests import the helpers themselves by name from here. The names load on first use, so
a worker process started as `python -m dynamo.testing.id_worker` does not import pytest or httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dynamo.testing.asgi import serve_asgi
    from dynamo.testing.processes import RunningServer, dynamo_run_cmd
    from dynamo.testing.servers import EtcdServer, NatsServer, free_port
    from dynamo.testing.wait import until, wait_for
    from dynamo.testing.workers import (
        KilledMidStream,
        Workers,
        both_planes,
        client_for,
        collect,
        endless_counter,
        nats_plane,
        serve,
        sigkill_mid_stream,
        tcp_plane,
    )

#: name -> the module (under dynamo.testing) that defines it.
_WHERE = {
    "RunningServer": "processes",
    "dynamo_run_cmd": "processes",
    "EtcdServer": "servers",
    "NatsServer": "servers",
    "free_port": "servers",
    "until": "wait",
    "wait_for": "wait",
    "KilledMidStream": "workers",
    "Workers": "workers",
    "both_planes": "workers",
    "client_for": "workers",
    "collect": "workers",
    "endless_counter": "workers",
    "nats_plane": "workers",
    "serve": "workers",
    "serve_asgi": "asgi",
    "sigkill_mid_stream": "workers",
    "tcp_plane": "workers",
}

__all__ = [
    "EtcdServer",
    "KilledMidStream",
    "NatsServer",
    "RunningServer",
    "Workers",
    "both_planes",
    "client_for",
    "collect",
    "dynamo_run_cmd",
    "endless_counter",
    "free_port",
    "nats_plane",
    "serve",
    "serve_asgi",
    "sigkill_mid_stream",
    "tcp_plane",
    "until",
    "wait_for",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dynamo.testing' has no attribute '{name}'")
    return getattr(importlib.import_module(f"dynamo.testing.{module}"), name)
