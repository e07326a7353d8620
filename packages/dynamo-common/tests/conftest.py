"""Fixtures for dynamo-common's tests: the SmolLM2 card, a byte-level tokenizer, chat templates.

The shared ones (the SmolLM2 GGUF, real etcd and NATS, runtime workers and clients) come from
the dynamo-testing pytest plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

TEMPLATES = Path(__file__).parent / "templates"


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
