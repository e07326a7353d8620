"""The tokenizer built from GGUF metadata tokenizes exactly as llama.cpp does.

Besides SmolLM2's own file, the tests write small GGUF files (vocabulary only, no tensors) with the
`gguf` package: SmolLM2's vocabulary under other pre-tokenizer names (Llama 3, Qwen 2, GPT-2), and a
SentencePiece vocabulary trained here, so that each tokenizer kind is checked against llama.cpp.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from dynamo.llm.errors import GGUFError
from dynamo.llm.gguf import GGUFMetadata

TEMPLATES = Path(__file__).parent / "templates"

TEXTS = [
    "Hello world",
    "The year 2024 had 366 days!!",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "  leading spaces,   runs\tand\ttabs\n\n\nnewlines ",
    "émoji 🤖🎉 中文 テスト Ünïcødé",
    "def f(x):\n    return x**2  # comment\n",
    "https://example.com/path?q=1&r=2",
    "I'm sure they'll've done it; we'd DONE it. ABC'S DON'T",
    "1234567890 3.14159 -42 12345678901234567890",
    "",
    " ",
    "a\r\nb\r\n\r\n",
    "   \n  \n\t \n",
    "trailing   ",
    "안녕하세요 مرحبا Привет 👨‍👩‍👧‍👦 🏳️‍🌈",
    "Hello<|im_end|>world <|im_start|> spaced <|im_start|system",
    "\u00a0nbsp\u2003emspace ﬁ \uff21\uff42\uff43 Ω≈ç√∫",
    'fn main() {\n\tprintln!("hi");\n}\n',
    "$100,000.00 50% i.e. e.g. ... ?!? ---",
    "a" * 300,
]


def llama_cpp_vocab(path: Path):
    llama_cpp = pytest.importorskip("llama_cpp")
    return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)


def assert_like_llama_cpp(meta: GGUFMetadata, vocab, text: str) -> list[int]:
    ours = meta.tokenizer.encode(text, add_special_tokens=False).ids
    assert ours == vocab.tokenize(text.encode(), add_bos=False, special=True), text
    return ours


def write_vocab_gguf(path: Path, **kv) -> Path:
    """A tensor-less GGUF that llama.cpp loads with `vocab_only=True`."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(4096)
    writer.add_embedding_length(64)
    writer.add_block_count(1)
    writer.add_head_count(1)
    writer.add_feed_forward_length(128)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model(kv.pop("model"))
    if "pre" in kv:
        writer.add_tokenizer_pre(kv.pop("pre"))
    writer.add_token_list(kv.pop("tokens"))
    writer.add_token_types(kv.pop("types"))
    if "merges" in kv:
        writer.add_token_merges(kv.pop("merges"))
    if "scores" in kv:
        writer.add_token_scores(kv.pop("scores"))
    for key, value in kv.items():
        if isinstance(value, bool):
            writer.add_bool(f"tokenizer.ggml.{key}", value)
        else:
            writer.add_uint32(f"tokenizer.ggml.{key}", value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def meta(smollm2_gguf):
    return GGUFMetadata.read(smollm2_gguf)


@pytest.fixture(scope="module")
def llama_vocab(smollm2_gguf):
    return llama_cpp_vocab(smollm2_gguf)


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizes_like_llama_cpp(meta, llama_vocab, text):
    ours = assert_like_llama_cpp(meta, llama_vocab, text)
    assert meta.tokenizer.decode(ours, skip_special_tokens=False) == text


def test_metadata(meta):
    assert meta.architecture == "llama"
    assert meta.context_length == 8192
    assert meta.tokenizer_model == "gpt2"
    assert meta.special_tokens == {
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|im_end|>",
    }
    assert (meta.bos_token_id, meta.eos_token_id, meta.unk_token_id, meta.pad_token_id) == (
        1,
        2,
        0,
        2,
    )
    assert meta.eos_token_ids == [2]
    assert meta.add_bos_token is False
    assert meta.tokenizer_config["eos_token"] == "<|im_end|>"
    assert "<|im_start|>" in meta.chat_template
    assert meta.tokenizer.token_to_id("<|im_end|>") == 2
    assert (
        meta.tokenizer.encode("hi").ids == meta.tokenizer.encode("hi", add_special_tokens=False).ids
    )


@pytest.mark.parametrize("pre", ["llama-bpe", "qwen2", "gpt-2", "starcoder"])
def test_pre_tokenizer_names_split_like_llama_cpp(meta, tmp_path, pre):
    """SmolLM2's vocabulary relabelled with another `tokenizer.ggml.pre`: the split regex differs."""
    path = write_vocab_gguf(
        tmp_path / f"{pre}.gguf",
        model="gpt2",
        pre=pre,
        tokens=meta.tokens,
        types=meta.get("tokenizer.ggml.token_type"),
        merges=meta.get("tokenizer.ggml.merges"),
        bos_token_id=1,
        eos_token_id=2,
        add_bos_token=True,
    )
    relabelled = GGUFMetadata.read(path)
    vocab = llama_cpp_vocab(path)
    for text in TEXTS:
        assert_like_llama_cpp(relabelled, vocab, text)
    assert relabelled.tokenizer.encode("hi").ids == vocab.tokenize(b"hi", add_bos=True)


@pytest.fixture(scope="module")
def spm_vocab() -> dict:
    """A SentencePiece-style vocabulary: unk/bos/eos, 256 byte tokens, learned pieces, chat tokens."""
    corpus = [p.read_text() for p in sorted(TEMPLATES.glob("*.jinja"))] + TEXTS
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always", split=True)
    trainer_tok.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=800, show_progress=False)
    )
    chat = ["<|im_start|>", "<|im_end|>", "<think>"]
    by_id = sorted(trainer_tok.get_vocab().items(), key=lambda kv: kv[1])
    learned = [t for t, _ in by_id if t not in chat]  # llama.cpp refuses duplicate tokens
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *learned, *chat]
    types = [2, 3, 3, *[6] * 256, *[1] * len(learned), 3, 3, 4]
    # The later a piece was learned, the lower its score: llama.cpp merges the best score first.
    scores = [0.0] * 259 + [-float(i) for i in range(len(learned))] + [0.0] * 3
    return {"model": "llama", "tokens": tokens, "types": types, "scores": scores}


@pytest.mark.parametrize("space_prefix", [True, False])
def test_sentencepiece_tokenizes_like_llama_cpp(tmp_path, spm_vocab, space_prefix):
    path = write_vocab_gguf(
        tmp_path / "spm.gguf",
        **spm_vocab,
        bos_token_id=1,
        eos_token_id=2,
        unknown_token_id=0,
        add_space_prefix=space_prefix,
    )
    meta = GGUFMetadata.read(path)
    vocab = llama_cpp_vocab(path)
    extra = ["x <|im_end|> y", "a<think>b", "   lead", "The card goes to the object store."]
    for text in TEXTS + extra:
        ids = assert_like_llama_cpp(meta, vocab, text)
        if "<" not in text:  # after a special token llama.cpp adds a space that decoding keeps
            assert meta.tokenizer.decode(ids) == text
    # a SentencePiece file that does not say otherwise starts every encoding with BOS
    assert meta.add_bos_token is True
    assert meta.tokenizer.encode("hi").ids == vocab.tokenize(b"hi", add_bos=True)
    assert meta.tokenizer.encode("hi").ids[0] == 1


def test_unknown_tokenizer_model_is_a_clear_error(tmp_path):
    path = write_vocab_gguf(
        tmp_path / "bert.gguf", model="bert", tokens=["[PAD]", "a"], types=[3, 1]
    )
    with pytest.raises(GGUFError, match=r"tokenizer model 'bert'.*--model-config"):
        _ = GGUFMetadata.read(path).tokenizer


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(GGUFError, match=r"x\.gguf"):
        GGUFMetadata.read(bad)
