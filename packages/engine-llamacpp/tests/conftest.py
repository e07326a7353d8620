"""Fixtures of the llama.cpp engine's tests."""

from __future__ import annotations

import pytest

#: The context and batch the embedding engine uses for SmolLM2: a reference made with other
#: sizes rounds differently (batched kernels).
EMBEDDING_CONTEXT = 8192


@pytest.fixture(scope="module")
def embedding_reference(smollm2_gguf):
    """llama-cpp-python's own embedding model (mean pooling), to compare our vectors with."""
    from llama_cpp import Llama

    n = EMBEDDING_CONTEXT
    llama = Llama(
        model_path=str(smollm2_gguf),
        embedding=True,
        pooling_type=1,
        n_ctx=n,
        n_batch=n,
        n_ubatch=n,
        verbose=False,
    )
    yield llama
    llama.close()
