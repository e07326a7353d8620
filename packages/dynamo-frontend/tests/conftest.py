"""Fixtures for the frontend tests: the SmolLM2 GGUF, free ports, and `dynamo-run` subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dynamo_run_cmd(*args: str) -> list[str]:
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
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *head, *args, *host_port],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dynamo-run exited early:\n{self.proc.stdout.read()}")
            try:
                # A discovering frontend is "not ready" (503) until a model appears: wait for /live.
                path = "/health" if healthy else "/live"
                if httpx.get(f"{self.url}{path}", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
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

    def output(self) -> str:
        return self.proc.stdout.read() if self.proc.stdout else ""


@pytest.fixture(name="free_port")
def free_port_fixture():
    return free_port


@pytest.fixture(name="dynamo_run_cmd")
def dynamo_run_cmd_fixture():
    return dynamo_run_cmd


@pytest.fixture
def start_server() -> Iterator:
    servers: list[RunningServer] = []

    def start(*args: str, env: dict[str, str] | None = None, **kw) -> RunningServer:
        server = RunningServer(list(args), env, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(signal.SIGKILL if server.proc.poll() is None else signal.SIGTERM)
