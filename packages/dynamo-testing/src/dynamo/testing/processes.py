"""`dynamo-run` as a subprocess: the command line, and an HTTP server on a free port waited on
until it answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from dynamo.testing.servers import free_port


def dynamo_run_cmd(*args: str) -> list[str]:
    """`dynamo-run ARGS...` with this interpreter (the console script may not be on PATH)."""
    return [sys.executable, "-m", "dynamo.frontend.cli", *args]


class RunningServer:
    """A `dynamo-run in=http ...` subprocess on a free port, waited on until /health is ready."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
        healthy: bool = True,
        module: str = "dynamo.frontend.cli",
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "DYN_TOKEN_ECHO_DELAY_MS": "0", **(env or {})}
        head = ["in=http"] if module == "dynamo.frontend.cli" else []
        host_port = ["--http-host", "127.0.0.1", "--http-port", str(self.port)]
        # Output goes to a file, not a pipe: nobody reads a pipe while the server runs, and a
        # chatty engine would block on a full one.
        self._log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *head, *args, *host_port],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                output = self.output()
                self.close()
                raise RuntimeError(f"dynamo-run exited early:\n{output}")
            try:
                # A discovering frontend is "not ready" (503) until a model appears: wait for /live.
                path = "/health" if healthy else "/live"
                if httpx.get(f"{self.url}{path}", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        self.close()
        raise RuntimeError("dynamo-run did not become healthy in time")

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def close(self) -> None:
        """Drop the captured output (after `stop`)."""
        self._log.close()

    def output(self) -> str:
        """Everything the server printed so far."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()


def server_factory() -> Iterator[Callable[..., RunningServer]]:
    """A generator fixture's body: yields `start(*args, env=..., **kw) -> RunningServer`, then
    kills whatever the test left running."""
    servers: list[RunningServer] = []

    def start(*args: str, env: dict[str, str] | None = None, **kw: Any) -> RunningServer:
        server = RunningServer(list(args), env, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(signal.SIGKILL if server.proc.poll() is None else signal.SIGTERM)
        server.close()
