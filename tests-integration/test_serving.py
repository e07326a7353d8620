"""Serving through containers: the frontend image routing to an echo worker, and the llama.cpp
and mistral.rs images serving SmolLM2 on their own."""

from __future__ import annotations

import pytest
from containers import IMAGES, MODEL, Cluster
from testcontainers.core.container import DockerContainer


def test_request_through_frontend_container(cluster: Cluster) -> None:
    cluster.worker("out=echo_core")
    frontend = cluster.frontend()
    cluster.wait_healthy(frontend)
    with cluster.client(frontend) as client:
        models = client.get("/v1/models").json()
        assert [m["id"] for m in models["data"]] == [MODEL]
        resp = cluster.chat(client, "hello from a container", max_tokens=200)
    assert resp.status_code == 200, resp.text
    # echo_core streams the prompt's tokens back, as rendered by the model card's chat template
    # (fetched from NATS by the frontend), up to the first end-of-turn token, which stops it.
    choice = resp.json()["choices"][0]
    assert choice["message"]["content"].startswith("<|im_start|>system\n")
    assert choice["finish_reason"] == "stop"


@pytest.mark.parametrize("image", ["engine-llamacpp", "engine-mistralrs"])
def test_engine_image_serves_smollm2_by_default(image: str) -> None:
    with DockerContainer(IMAGES[image]).with_exposed_ports(8080) as server:
        Cluster.wait_healthy(server)
        with Cluster.client(server, timeout=120) as client:
            resp = Cluster.chat(
                client, "What is the capital of France?", max_tokens=16, temperature=0
            )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == MODEL
    assert body["choices"][0]["message"]["content"].strip()
    assert body["usage"]["completion_tokens"] > 0
