"""Fixtures for the container tests. A machine without a Docker engine, or without the images
that `docker/build.sh` builds, skips them and says why."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The test modules import their helpers from containers.py beside this file.
sys.path.insert(0, str(Path(__file__).parent))

from containers import IMAGES, Cluster
from testcontainers.core.network import Network


def docker_problem() -> str | None:
    """Why these tests cannot run here, or None when they can."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:
        return f"no Docker engine reachable ({exc.__class__.__name__})"
    missing = [image for image in IMAGES.values() if not client.images.list(name=image)]
    if missing:
        return f"images missing ({', '.join(missing)}): run docker/build.sh"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problem = docker_problem()
    for item in items:
        item.add_marker(pytest.mark.docker)
        if problem is not None:
            item.add_marker(pytest.mark.skip(reason=problem))


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with Network() as network:
        cluster = Cluster(network)
        try:
            cluster.nats = cluster.service("nats")
            cluster.etcd = cluster.service("etcd")
            yield cluster
        finally:
            for container in reversed(cluster.containers):
                container.stop()
