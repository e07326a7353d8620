"""Fixtures shared by every package's tests: real etcd and NATS servers (see dynamo.runtime.testing)."""

from __future__ import annotations

import pytest


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
