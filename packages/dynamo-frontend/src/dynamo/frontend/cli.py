"""`dynamo-run` (and `dynamo run`): parse the command line into a `RunConfig` (which checks it
whole), run the mode it names, and turn what the user must fix into one line and an exit code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import TYPE_CHECKING

from dynamo.frontend.flags import UsageError, parse_command_line
from dynamo.frontend.inputs import InputError
from dynamo.frontend.logging_setup import setup_logging
from dynamo.frontend.modes import run_mode
from dynamo.frontend.process_exit import exit_process
from dynamo.llm.errors import EngineError, RequestError
from dynamo.runtime.auth import ControlPlaneAuthError

if TYPE_CHECKING:
    from dynamo.frontend.run_config import RunConfig

log = logging.getLogger("dynamo.frontend")


def _run(config: RunConfig) -> None:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        runner = asyncio.Runner()
    with runner:
        runner.run(run_mode(config))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None, prog: str = "dynamo-run") -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        config = parse_command_line(argv, prog)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    setup_logging(config.verbose)
    # Until a server installs its own graceful handler, SIGTERM stops us like Ctrl-C: exit 0.
    signal.signal(signal.SIGTERM, _interrupt)
    if config.http_workers > 1:
        from dynamo.frontend.http.workers import run_http_workers

        try:
            return run_http_workers(
                config.http_workers,
                config.http_host,
                config.http_port,
                lambda: _serve(config, prog),
            )
        except UsageError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            return 2
    return _serve(config, prog)


def _serve(config: RunConfig, prog: str) -> int:
    """Run the mode; the exit status, with what the user must fix as one line."""
    try:
        _run(config)
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


def run() -> None:
    """The `dynamo-run` command (and `python -m dynamo.frontend.cli`): `main`, then leave at
    once, without the interpreter's teardown (`dynamo.frontend.process_exit`). `main` itself
    returns, for callers in a process that goes on (tests)."""
    exit_process(main())


def dynamo() -> None:
    """The `dynamo` command: `dynamo_main`, then leave at once like `run`."""
    exit_process(dynamo_main())


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
    run()
