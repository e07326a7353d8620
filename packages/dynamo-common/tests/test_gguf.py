"""The tokenizer built from GGUF metadata tokenizes exactly as llama.cpp does."""

from __future__ import annotations

import pytest

from dynamo.llm.gguf import GGUFError, GGUFMetadata

TEXTS = [
    "Hello world",
    "The year 2024 had 366 days!!",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "  leading spaces,   runs\tand\ttabs\n\n\nnewlines ",
    "émoji 🤖🎉 中文 テスト Ünïcødé",
    "def f(x):\n    return x**2  # comment\n",
    "https://example.com/path?q=1&r=2",
    "I'm sure they'll've done it; we'd DONE it.",
    "1234567890 3.14159 -42",
]


@pytest.fixture(scope="module")
def meta(smollm2_gguf):
    return GGUFMetadata.read(smollm2_gguf)


@pytest.fixture(scope="module")
def llama_vocab(smollm2_gguf):
    llama_cpp = pytest.importorskip("llama_cpp")
    return llama_cpp.Llama(model_path=str(smollm2_gguf), vocab_only=True, verbose=False)


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizes_like_llama_cpp(meta, llama_vocab, text):
    ours = meta.tokenizer.encode(text, add_special_tokens=False).ids
    assert ours == llama_vocab.tokenize(text.encode(), add_bos=False, special=True)
    assert meta.tokenizer.decode(ours, skip_special_tokens=False) == text


def test_metadata(meta):
    assert meta.architecture == "llama"
    assert meta.context_length == 8192
    assert meta.special_tokens["eos_token"] == "<|im_end|>"
    assert meta.eos_token_ids == [2]
    assert "<|im_start|>" in meta.chat_template
    assert meta.tokenizer.token_to_id("<|im_end|>") == 2


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(GGUFError, match=r"x\.gguf"):
        GGUFMetadata.read(bad)
