"""The vLLM CPU image (`docker/build.sh vllm-cpu`, built only when named) serving SmolLM2 as an HF
folder mounted from the host (packages/engine-vllm/scripts/smollm2_hf_folder.py makes it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from containers import PREFIX, Cluster
from testcontainers.core.container import DockerContainer

IMAGE = f"{PREFIX}/engine-vllm-cpu:latest"
FOLDER = Path(
    os.environ.get("DYNAMO_VLLM_MODEL")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "dynamo"
    / "smollm2-135m-instruct-hf"
)


def _missing() -> str | None:
    import docker

    if not docker.from_env().images.list(name=IMAGE):
        return f"{IMAGE} is not built (docker/build.sh vllm-cpu)"
    if not (FOLDER / "config.json").is_file():
        return (
            f"no SmolLM2 HF folder at {FOLDER} (packages/engine-vllm/scripts/smollm2_hf_folder.py)"
        )
    return None


@pytest.mark.slow
def test_vllm_cpu_image_serves_an_hf_folder() -> None:
    problem = _missing()
    if problem:
        pytest.skip(problem)
    server = (
        DockerContainer(IMAGE)
        .with_exposed_ports(8080)
        .with_volume_mapping(str(FOLDER), "/models/smollm2", "ro")
        .with_kwargs(shm_size="1g")  # vLLM's engine processes share memory; 64 MiB is too little
    )
    with server:
        Cluster.wait_healthy(server, within_s=900)
        with Cluster.client(server, timeout=300) as client:
            (model,) = [m["id"] for m in client.get("/v1/models").json()["data"]]
            resp = Cluster.chat(
                client, "What is the capital of France?", model=model, max_tokens=16,
                temperature=0,
            )  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert "Paris" in resp.json()["choices"][0]["message"]["content"]
