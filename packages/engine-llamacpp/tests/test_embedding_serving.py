"""`dynamo-run in=http out=llamacpp --embedding` as a real server, called with the `openai` SDK:
the vectors are llama.cpp's own (`Llama.embed(normalize=True)`) for the same text."""

from __future__ import annotations

import json

import openai
import pytest

TEXTS = ["hello world", "The quick brown fox jumps over the lazy dog."]


@pytest.fixture(scope="module")
def server(start_module_server, smollm2_gguf):
    return start_module_server(
        "out=llamacpp",
        str(smollm2_gguf),
        "--embedding",
        "--extra-engine-args",
        json.dumps({"pooling_type": 1}),
        "--model-name",
        "smol-embed",
    )


def close(ours, theirs, tolerance):
    assert len(ours) == len(theirs)
    return max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < tolerance


def test_vectors_equal_llama_cpp(server, embedding_reference):
    client = openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0)
    expected = embedding_reference.embed(TEXTS, normalize=True)
    # The SDK asks for base64 (float32) unless told otherwise, and decodes it.
    got = client.embeddings.create(model="smol-embed", input=TEXTS)
    assert [d.index for d in got.data] == [0, 1] and got.model == "smol-embed"
    for ours, theirs in zip(got.data, expected, strict=True):
        assert close(ours.embedding, theirs, 1e-6)
    floats = client.embeddings.create(model="smol-embed", input=TEXTS[0], encoding_format="float")
    assert close(floats.data[0].embedding, expected[0], 1e-9)
    tokens = embedding_reference.tokenize(TEXTS[0].encode())
    by_ids = client.embeddings.create(model="smol-embed", input=tokens, encoding_format="float")
    assert close(by_ids.data[0].embedding, expected[0], 1e-9)
    assert (
        got.usage.prompt_tokens
        == got.usage.total_tokens
        == sum(len(embedding_reference.tokenize(t.encode())) for t in TEXTS)
    )


def test_refusals(server):
    client = openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="smol-embed", input="x", dimensions=8)
    assert e.value.body["param"] == "dimensions"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="smol-embed", messages=[{"role": "user", "content": "x"}]
        )
    assert "embeddings only" in e.value.message
    models = client.models.list().data
    assert [m.id for m in models] == ["smol-embed"]
