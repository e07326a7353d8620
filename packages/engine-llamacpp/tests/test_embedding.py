"""`out=llamacpp --embedding`: our vectors are llama.cpp's own (`Llama.embed`, normalized) for
the same text, batched or not; bad settings and inputs are refused clearly."""

from __future__ import annotations

import math

import pytest
import pytest_asyncio

from dynamo.engines.llamacpp._embedding import LlamaCppEmbeddingEngine, normalize
from dynamo.llm import EngineConfig
from dynamo.llm.errors import EngineError, InvalidRequestError
from dynamo.llm.model_card import load_card
from dynamo.runtime.context import Context

TEXTS = ["hello world", "The quick brown fox jumps over the lazy dog.", "héllo, wörld — ünïcode"]


@pytest.fixture(scope="module")
def card(smollm2_gguf):
    return load_card(str(smollm2_gguf), model_name="smol")


def config(card, smollm2_gguf, **extra):
    return EngineConfig(
        model_name="smol", card=card, model_path=str(smollm2_gguf), extra_engine_args=extra
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(card, smollm2_gguf):
    engine = await LlamaCppEmbeddingEngine.start(config(card, smollm2_gguf, pooling_type=1))
    yield engine
    await engine.close()


def test_normalize():
    assert normalize([3.0, 4.0]) == [0.6, 0.8]
    assert normalize([0.0, 0.0]) == [0.0, 0.0]


@pytest.mark.asyncio(loop_scope="module")
async def test_vectors_equal_llama_cpp_embed(engine, card, embedding_reference):
    ids = [e.ids for e in card.tokenizer().encode_batch(TEXTS, add_special_tokens=True)]
    assert ids == [embedding_reference.tokenize(t.encode()) for t in TEXTS]  # the same tokens...
    [out] = [o async for o in engine.generate({"model": "smol", "token_ids": ids}, Context())]
    expected = embedding_reference.embed(TEXTS, normalize=True)
    assert len(out["embeddings"]) == len(TEXTS)
    for ours, theirs in zip(out["embeddings"], expected, strict=True):  # ...the same vectors
        assert len(ours) == len(theirs) == 576
        assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < 1e-6
        assert math.isclose(sum(v * v for v in ours), 1.0, rel_tol=1e-6)
    assert out["prompt_tokens"] == out["total_tokens"] == sum(map(len, ids))
    # One input alone gives the same vector as in a batch, up to the rounding of batched
    # kernels (llama.cpp's own `embed` behaves the same).
    [single] = [
        o async for o in engine.generate({"model": "smol", "token_ids": ids[1:2]}, Context())
    ]
    cosine = sum(a * b for a, b in zip(single["embeddings"][0], out["embeddings"][1], strict=True))
    assert cosine > 0.9999


@pytest.mark.asyncio(loop_scope="module")
async def test_too_long_input(engine):
    with pytest.raises(InvalidRequestError, match="at most"):
        [o async for o in engine.generate({"model": "smol", "token_ids": [[1] * 9000]}, Context())]


async def test_no_pooling_is_refused(card, smollm2_gguf):
    with pytest.raises(EngineError, match="pooling_type"):
        await LlamaCppEmbeddingEngine.start(config(card, smollm2_gguf))


async def test_unknown_extra_args_are_refused(card, smollm2_gguf):
    with pytest.raises(EngineError, match="not_a_param"):
        await LlamaCppEmbeddingEngine.start(config(card, smollm2_gguf, not_a_param=1))
