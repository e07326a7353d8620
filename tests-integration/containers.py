"""Containers on a private network for the integration tests: etcd, NATS, frontends, workers.

The images come from `docker/build.sh` (nothing is pulled). Ryuk, testcontainers' reaper, is an
image from a registry, so it is disabled; the `cluster` fixture removes what it started.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import httpx
import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

testcontainers_config.ryuk_disabled = True

PREFIX = os.environ.get("IMAGE_PREFIX", "dynamo-py")
IMAGES = {
    name: f"{PREFIX}/{name}:latest"
    for name in (
        "etcd",
        "nats",
        "frontend",
        "engine-echo",
        "engine-llamacpp",
        "engine-mistralrs",
    )
}
ENDPOINT = "dyn://dynamo.backend.generate"
MODEL = "SmolLM2-135M-Instruct.Q4_1"
HEALTHY_WITHIN_S = 120.0


def health(container: DockerContainer) -> str:
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    state = wrapped.attrs["State"]
    if not state.get("Running"):
        return "exited"
    return state.get("Health", {}).get("Status", "running")


def wait_healthy(container: DockerContainer, within_s: float = HEALTHY_WITHIN_S) -> None:
    """Block until the container's own HEALTHCHECK passes; fail with its logs if it never does."""
    deadline = time.monotonic() + within_s
    while (status := health(container)) != "healthy":
        if status == "exited" or time.monotonic() > deadline:
            out, err = container.get_logs()
            logs = (out + err).decode(errors="replace")[-3000:]
            pytest.fail(f"{container.image} is {status} after {within_s}s:\n{logs}")
        time.sleep(0.5)


def ip_on(container: DockerContainer, network: Network) -> str:
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    return wrapped.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]


@dataclass
class Cluster:
    """etcd and NATS on a private network, and the frontends and workers a test adds to it."""

    network: Network
    etcd: DockerContainer | None = None
    nats: DockerContainer | None = None
    containers: list[DockerContainer] = field(default_factory=list)
    runtime_env: dict[str, str] = field(
        default_factory=lambda: {
            "ETCD_ENDPOINTS": "http://etcd:2379",
            "NATS_SERVER": "nats://nats:4222",
        }
    )

    def start(self, container: DockerContainer, wait: bool = True) -> DockerContainer:
        container.with_network(self.network)
        self.containers.append(container)
        container.start()
        if wait:
            wait_healthy(container)
        return container

    def service(self, name: str) -> DockerContainer:
        container = DockerContainer(IMAGES[name]).with_network_aliases(name)
        if name == "etcd":
            container.with_env("ETCD_ADVERTISE_CLIENT_URLS", "http://etcd:2379")
        if name == "nats":
            container.with_exposed_ports(8222)
        return self.start(container)

    def frontend(self, *args: str) -> DockerContainer:
        container = DockerContainer(IMAGES["frontend"]).with_exposed_ports(8080)
        container.with_envs(**self.runtime_env).with_command(["in=http", "out=dyn", *args])
        return self.start(container, wait=False)

    def worker(
        self, *args: str, image: str = "engine-echo", env: dict[str, str] | None = None
    ) -> DockerContainer:
        container = DockerContainer(IMAGES[image]).with_envs(**self.runtime_env, **(env or {}))
        container.with_command([f"in={ENDPOINT}", *(args or ("out=echo_core",))])
        return self.start(container)

    def stop(self, container: DockerContainer) -> None:
        container.stop()
        self.containers.remove(container)

    wait_healthy = staticmethod(wait_healthy)
    health = staticmethod(health)

    def ip(self, container: DockerContainer) -> str:
        return ip_on(container, self.network)

    @staticmethod
    def client(frontend: DockerContainer, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client for a frontend container's published port 8080."""
        port = frontend.get_exposed_port(8080)
        return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout)

    @staticmethod
    def chat(client: httpx.Client, text: str, **extra: object) -> httpx.Response:
        body = {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}
        return client.post("/v1/chat/completions", json=body)

    def nats_messages_to(self) -> dict[str, int]:
        """Messages NATS has delivered to each client, by the client's address on the network:
        for a worker, the requests routed to it."""
        port = self.nats.get_exposed_port(8222)
        connz = httpx.get(f"http://127.0.0.1:{port}/connz", timeout=10).json()
        return {conn["ip"]: conn["out_msgs"] for conn in connz.get("connections", [])}
