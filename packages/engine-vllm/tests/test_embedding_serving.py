"""`dynamo-run out=vllm --embedding` serving `/v1/embeddings` on vLLM's pooling runner (the CPU
build): in process (`in=http`) and as a worker behind `in=http out=dyn` (real etcd and NATS),
called with the real openai SDK. The vectors equal vLLM's own `LLM.embed` on the same tokens.

SmolLM2 is a generative model: vLLM's pooling runner converts it to an embedding model ("last
token" pooling, normalized), as `vllm serve --runner pooling` would. One server of each kind and
one reference run for the module (each vLLM start is ~40 s on two cores).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest
from transformers import AutoTokenizer

pytestmark = [pytest.mark.vllm, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

TEXTS = ["hello world", "The quick brown fox jumps over the lazy dog.", "Embeddings, please!"]
MODEL = "smol-vllm-embed"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def tokenizer(smollm2_hf):
    return AutoTokenizer.from_pretrained(smollm2_hf)


@pytest.fixture(scope="module")
def token_ids(tokenizer) -> list[list[int]]:
    """The texts as the frontend tokenizes them (the card's tokenizer, special tokens added)."""
    return [tokenizer.encode(t, add_special_tokens=True) for t in TEXTS]


@pytest.fixture(scope="module")
def expected(smollm2_hf, vllm_testing, token_ids) -> list[list[float]]:
    return vllm_testing.reference_embed(smollm2_hf, token_ids)


@pytest.fixture(scope="module")
def local(start_module_server, smollm2_hf, vllm_testing):
    server = start_module_server(
        *vllm_testing.server_args(smollm2_hf, "--embedding", "--served-model-name", MODEL, "e2"),
        env=vllm_testing.server_env,
        timeout=600,
    )
    yield server
    # SIGTERM, not the factory's SIGKILL: vLLM's engine core process outlives a killed parent.
    assert server.stop() == 0


@pytest.fixture(scope="module")
def distributed(start_module_server, smollm2_hf, vllm_testing, etcd_server, nats_server):
    runtime = {"ETCD_ENDPOINTS": etcd_server.url, "NATS_SERVER": nats_server.url}
    args = vllm_testing.server_args(smollm2_hf, "--embedding", "--served-model-name", MODEL, "e2")
    worker = subprocess.Popen(
        [sys.executable, "-m", "dynamo.frontend.cli", "in=dyn://vllmembed.embed.generate", *args],
        env={**os.environ, **runtime, **vllm_testing.server_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    frontend = start_module_server("out=dyn", env=runtime, healthy=False)
    deadline = time.monotonic() + 600
    while {MODEL, "e2"} - {m["id"] for m in httpx.get(f"{frontend.v1}/models").json()["data"]}:
        assert worker.poll() is None, "the vLLM embedding worker exited"
        assert time.monotonic() < deadline, "the vLLM embedding worker never registered"
        time.sleep(0.5)
    yield frontend
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(120) == 0


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0, timeout=300)


def close(ours: list[float], theirs: list[float]) -> bool:
    assert len(ours) == len(theirs)
    return max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < TOLERANCE


def check_vectors(server, token_ids, expected) -> None:
    oai = client(server)
    # The SDK asks for base64 (float32) unless told otherwise, and decodes it; a batch of texts.
    got = oai.embeddings.create(model=MODEL, input=TEXTS)
    assert got.model == MODEL and [d.index for d in got.data] == [0, 1, 2]
    for ours, theirs in zip(got.data, expected, strict=True):
        assert close(ours.embedding, theirs)
    assert got.usage.prompt_tokens == got.usage.total_tokens == sum(map(len, token_ids))
    # Floats, token ids, and an alias.
    floats = oai.embeddings.create(model="e2", input=TEXTS[1], encoding_format="float")
    assert floats.model == MODEL and close(floats.data[0].embedding, expected[1])
    by_ids = oai.embeddings.create(model=MODEL, input=token_ids, encoding_format="float")
    for ours, theirs in zip(by_ids.data, expected, strict=True):
        assert close(ours.embedding, theirs)
    # vLLM's pooler normalizes embeddings by default: unit vectors.
    assert abs(sum(v * v for v in floats.data[0].embedding) - 1.0) < 1e-4


def check_refusals(server) -> None:
    oai = client(server)
    size = len(oai.embeddings.create(model=MODEL, input="x").data[0].embedding)
    same = oai.embeddings.create(model=MODEL, input="x", dimensions=size)
    assert len(same.data[0].embedding) == size
    with pytest.raises(openai.BadRequestError) as e:
        oai.embeddings.create(model=MODEL, input="x", dimensions=8)
    assert e.value.body["param"] == "dimensions" and "Matryoshka" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert "embeddings only" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        oai.embeddings.create(model=MODEL, input="word " * 3000)
    assert e.value.body["code"] == "context_length_exceeded"


def test_in_process_vectors_equal_vllms_own(local, token_ids, expected):
    check_vectors(local, token_ids, expected)
    rows = {m["id"]: m for m in httpx.get(f"{local.v1}/models").json()["data"]}
    assert rows[MODEL]["max_model_len"] == 2048


def test_in_process_refusals(local):
    check_refusals(local)


def test_through_out_dyn_vectors_equal_vllms_own(distributed, token_ids, expected):
    check_vectors(distributed, token_ids, expected)


def test_through_out_dyn_refusals(distributed):
    check_refusals(distributed)
