"""The etcd and NATS test servers: they answer on their port, come back on the same port after a
restart (the outage tests rely on it), and leave nothing running or on disk when closed."""

from __future__ import annotations

import socket

import pytest

from dynamo.testing import EtcdServer, NatsServer, free_port


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.integration
@pytest.mark.parametrize("kind", [EtcdServer, NatsServer])
def test_a_server_restarts_on_its_port_and_cleans_up(kind):
    server = kind()
    with server:
        port = server.port
        assert answers(port)
        server.restart()
        assert server.port == port and answers(port)
        data = server.data_dir
    assert server.proc is None and not answers(port)
    assert not data.exists()


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
