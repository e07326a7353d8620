"""`dynamo-run` (and `dynamo run`): parse the command line, start the engine, run the input."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

from dynamo.frontend.flags import Invocation, UsageError, parse_command_line
from dynamo.frontend.inputs.common import InputError
from dynamo.frontend.logging_setup import setup_logging
from dynamo.frontend.modes import run_mode
from dynamo.llm.engine import EngineError
from dynamo.llm.errors import RequestError
from dynamo.runtime.auth import ControlPlaneAuthError

if TYPE_CHECKING:
    from dynamo.runtime.config import RuntimeConfig

log = logging.getLogger("dynamo.frontend")


def _check_input(inv: Invocation) -> None:
    known = inv.input in ("http", "text", "stdin") or inv.input.startswith(("batch:", "dyn://"))
    if not known:
        raise UsageError(
            f"unknown input in={inv.input}: use text, stdin, http, batch:FILE or dyn://ns.comp.ep"
        )
    if inv.input.startswith("batch:") and not inv.input.removeprefix("batch:"):
        raise UsageError("in=batch: needs a file, e.g. in=batch:prompts.jsonl")
    if inv.output == "dyn" and inv.input.startswith("dyn://"):
        raise UsageError("in=dyn://... serves an engine; it cannot also be out=dyn")
    _check_serving_flags(inv)
    if inv.output == "dyn":
        for flag in ("context_length", "kv_cache_block_size"):
            if getattr(inv.args, flag) is not None:
                raise UsageError(
                    f"--{flag.replace('_', '-')} is a worker flag; it cannot be used with out=dyn"
                )
    distributed = inv.output == "dyn" or inv.input.startswith("dyn://")
    for flag, variable in (
        ("request_plane", "DYN_REQUEST_PLANE"),
        ("discovery_backend", "DYN_DISCOVERY_BACKEND"),
    ):
        value = getattr(inv.args, flag)
        if value is None:
            continue
        if not distributed:
            raise UsageError(
                f"--{flag.replace('_', '-')} is a distributed flag: it needs in=dyn:// or out=dyn"
            )
        # The runtime reads its settings from the environment, as upstream's does.
        os.environ[variable] = value
    if distributed:
        settings = _check_runtime_env()
        if inv.output == "dyn" and inv.args.router_mode == "kv" and not settings.needs_nats:
            raise UsageError(
                "--router-mode kv listens to the workers' KV events on NATS: set NATS_SERVER "
                "(file discovery and the TCP request plane need no NATS otherwise)"
            )


def _check_runtime_env() -> RuntimeConfig:
    """The runtime's settings (ETCD_ENDPOINTS, NATS_SERVER, DYN_ETCD_LEASE_TTL, ...), checked
    before any model loads."""
    from dynamo.runtime.config import RuntimeConfig
    from dynamo.runtime.errors import RuntimeConfigError

    try:
        return RuntimeConfig.from_env()
    except RuntimeConfigError as e:
        raise UsageError(str(e)) from None


def _check_serving_flags(inv: Invocation) -> None:
    """Refuse the model-serving flags where they would mean nothing."""
    args = inv.args
    if args.enable_anthropic_api and inv.input != "http":
        raise UsageError("--enable-anthropic-api serves HTTP: it needs in=http")
    if args.embedding and not (inv.input == "http" or inv.input.startswith("dyn://")):
        raise UsageError("--embedding serves POST /v1/embeddings: it needs in=http or in=dyn://")
    if inv.output == "dyn":
        for dest, flag in (
            ("embedding", "--embedding"),
            ("chat_template", "--chat-template"),
            ("served_model_name", "--served-model-name"),
        ):
            if getattr(args, dest):
                raise UsageError(
                    f"{flag} is a flag of the engine's side; out=dyn serves the "
                    "models its workers registered"
                )
    if args.model_aliases and inv.input != "http":
        raise UsageError(
            "several --served-model-name names need in=http (a worker registers one name)"
        )


def _run(inv: Invocation) -> None:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        runner = asyncio.Runner()
    with runner:
        runner.run(run_mode(inv))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None, prog: str = "dynamo-run") -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        inv = parse_command_line(argv, prog)
        _check_input(inv)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    setup_logging(inv.args.verbose)
    # Until a server installs its own graceful handler, SIGTERM stops us like Ctrl-C: exit 0.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        _run(inv)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 0
    except (UsageError, EngineError, ControlPlaneAuthError) as e:
        # Unknown or missing engine, unusable flag, missing model, credentials etcd or NATS
        # refuse: the user's to fix.
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except (RequestError, InputError, OSError) as e:
        print(f"{prog}: error: {getattr(e, 'message', None) or e}", file=sys.stderr)
        return 1
    return 0


def dynamo_main() -> int:
    """`dynamo run ...` behaves exactly like `dynamo-run ...`."""
    parser = argparse.ArgumentParser(
        prog="dynamo", usage="dynamo run [in=…] [out=…] [MODEL] [flags]"
    )
    parser.add_argument("command", choices=["run"], help="run: the same as dynamo-run")
    if len(sys.argv) < 2 or sys.argv[1] != "run":
        with contextlib.suppress(SystemExit):
            parser.parse_args(sys.argv[1:2] or ["--help"])
        return 2
    return main(sys.argv[2:], prog="dynamo run")


if __name__ == "__main__":
    sys.exit(main())
