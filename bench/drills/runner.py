"""The drills' command line: one subcommand a drill, with the options its table row names."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import __doc__ as package_doc
from .control import drill_control
from .fuzz import drill_fuzz
from .lose_worker import drill_lose_worker
from .overload import drill_overload
from .rolling import drill_rolling
from .soak import drill_soak


@dataclass(frozen=True)
class Option:
    type: Callable[[str], Any]
    help: str
    nargs: str | None = None


OPTIONS = {
    "workers": Option(int, "echo_core workers behind the out=dyn frontend"),
    "streams": Option(int, "streams started together"),
    "clients": Option(int, "concurrent clients, each looping on requests"),
    "max_tokens": Option(int, "tokens a stream asks for"),
    "delay_ms": Option(int, "the echo engine's pace per token (or character)"),
    "hang_after": Option(float, "seconds without a line that count as a hung stream"),
    "after": Option(float, "seconds into the load when the worker is signalled"),
    "signal": Option(str, "the signal the worker gets: KILL or TERM"),
    "migration_limit": Option(int, "the frontend's --migration-limit"),
    "worker_env": Option(str, "NAME=VALUE in the workers' environment", nargs="*"),
    "etcd_down": Option(float, "seconds etcd is stopped"),
    "nats_down": Option(float, "seconds NATS is stopped"),
    "settle": Option(float, "seconds of load after each restart"),
    "minutes": Option(float, "length of the run"),
    "sample": Option(float, "seconds between samples"),
    "warmup": Option(float, "share of the run left out of the slopes"),
    "capacity": Option(int, "--max-concurrent-requests"),
    "queue_size": Option(int, "--queue-size"),
    "queue_timeout": Option(float, "--queue-timeout"),
    "factor": Option(int, "requests sent, as a multiple of capacity + queue"),
    "seconds": Option(int, "schemathesis's time budget"),
    "request_timeout": Option(float, "seconds an answer may take before it counts as a hang"),
    "seed": Option(int, "schemathesis's seed (default: a new one, printed in its output)"),
}


@dataclass(frozen=True)
class Drill:
    run: Callable[[argparse.Namespace], Awaitable[dict[str, object]]]
    help: str
    defaults: dict[str, object]


_LOSE = {"workers": 2, "streams": 100, "max_tokens": 200, "delay_ms": 20, "after": 1.5}
_LOSE |= {"migration_limit": 3, "hang_after": 10.0}
_LOAD = {"workers": 2, "delay_ms": 10, "hang_after": 10.0}

DRILLS = {
    "kill": Drill(
        drill_lose_worker, "SIGKILL a worker under streaming load", _LOSE | {"signal": "KILL"}
    ),
    "drain": Drill(
        drill_lose_worker,
        "SIGTERM a worker under streaming load: its streams finish or are handed over",
        _LOSE | {"signal": "TERM", "worker_env": ["DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT=1"]},
    ),
    "rolling": Drill(drill_rolling, "replace every worker under load", _LOAD | {"clients": 16}),
    "control": Drill(
        drill_control,
        "etcd down for a while, then NATS restarted, under load",
        _LOAD | {"clients": 8, "etcd_down": 30.0, "nats_down": 3.0, "settle": 15.0},
    ),
    "soak": Drill(
        drill_soak,
        "streams for a while: errors, RSS and fd slopes",
        _LOAD | {"clients": 64, "max_tokens": 50, "minutes": 30.0, "sample": 5.0, "warmup": 0.2},
    ),
    "overload": Drill(
        drill_overload,
        "10x capacity against admission control",
        {"capacity": 8, "queue_size": 32, "queue_timeout": 2.0, "factor": 10, "delay_ms": 10},
    ),
    "fuzz": Drill(
        drill_fuzz,
        "fuzz the HTTP API from its OpenAPI schema (schemathesis)",
        {"seconds": 300, "clients": 2, "request_timeout": 10.0, "seed": None},
    ),
}


def parser() -> argparse.ArgumentParser:
    """One subcommand per drill, with the options its table row names."""
    top = argparse.ArgumentParser(description=(package_doc or "").split("\n\n")[0])
    sub = top.add_subparsers(dest="drill", required=True)
    for name, drill in DRILLS.items():
        p = sub.add_parser(name, help=drill.help, description=drill.run.__doc__)
        for option, default in drill.defaults.items():
            spec = OPTIONS[option]
            flag = "--" + option.replace("_", "-")
            p.add_argument(flag, type=spec.type, default=default, help=spec.help, nargs=spec.nargs)
    return top


def main() -> None:
    args = parser().parse_args()
    fields = asyncio.run(DRILLS[args.drill].run(args))
    print(json.dumps({"drill": args.drill, **vars(args), **fields}, default=str), flush=True)
