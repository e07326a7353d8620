"""The tokenizer cache gives exactly the tokenizer's ids, cold or warm, or turns itself off."""

from __future__ import annotations

import random

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from dynamo.llm.preprocessor import OpenAIPreprocessor
from dynamo.llm.protocols import ChatCompletionRequest
from dynamo.llm.tokenizer_cache import SegmentedEncoder

WORDS = ["alpha", "beta", "gamma", "wörld", "12", "345", "\n", "  ", "\t", "é", "🙂", "x"]


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(WORDS) + rng.choice(["", " ", "  ", "\n"]) for _ in range(n))


def trained_bpe(pre_tokenizer, specials: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = (
        decoders.Metaspace() if isinstance(pre_tokenizer, pre_tokenizers.Metaspace) else None
    )
    rng = random.Random(0)
    corpus = [random_text(rng, 40) for _ in range(300)]
    tok.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", *specials])
    )
    return tok


def prompts(specials: list[str], seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    doc = random_text(rng, 400)  # a long shared stretch, over the caching threshold
    out = []
    for turn in range(6):
        parts = [specials[0], "system\n", doc, specials[1], "\n"]
        for _ in range(turn + 1):
            parts += [specials[0], f"user\n{random_text(rng, 5)}", specials[1], "\n"]
            parts += [specials[0], f"assistant\n{random_text(rng, 8)}", specials[1], "\n"]
        out.append("".join(parts))
        out.append(doc + random_text(rng, 3))  # a completion-style prompt, no specials
        out.append(specials[1].join([specials[0]] * 3) + " " + random_text(rng, 30))
    return out


def assert_exact(tok: Tokenizer, encoder: SegmentedEncoder, texts: list[str]) -> None:
    for _ in range(2):  # cold, then warm
        for text in texts:
            assert encoder.encode(text) == tok.encode(text, add_special_tokens=False).ids, text


def test_smollm2_chat_prompts_are_exact_and_cached(smollm2_card):
    tok = smollm2_card.tokenizer()
    encoder = SegmentedEncoder(tok)
    assert encoder.enabled
    assert_exact(tok, encoder, prompts(["<|im_start|>", "<|im_end|>"]))
    assert encoder.stats.hits > 0
    assert encoder.stats.cached_tokens > encoder.stats.encoded_tokens


def test_multi_turn_reuses_the_history(smollm2_card):
    pre = OpenAIPreprocessor(smollm2_card)
    doc = random_text(random.Random(2), 600)
    messages = [{"role": "system", "content": doc}, {"role": "user", "content": "First?"}]

    def ids() -> list[int]:
        request = ChatCompletionRequest.model_validate({"model": "m", "messages": messages})
        return pre.preprocess_chat(request)["token_ids"]

    first = ids()
    assert pre.encoder.stats.hits == 0
    messages += [{"role": "assistant", "content": "An answer. " * 60}]
    messages += [{"role": "user", "content": "Second?"}]
    second = ids()
    assert pre.encoder.stats.hits == 1  # the system prompt
    assert second[: len(first) - 3] == first[: len(first) - 3]  # all but "assistant\n"
    direct = pre.tokenizer.encode(
        pre.render_chat(ChatCompletionRequest.model_validate({"model": "m", "messages": messages})),
        add_special_tokens=False,
    ).ids
    assert second == direct


def test_eviction_keeps_results_exact(smollm2_card):
    tok = smollm2_card.tokenizer()
    encoder = SegmentedEncoder(tok, capacity_tokens=3000)
    texts = prompts(["<|im_start|>", "<|im_end|>"], seed=3) + prompts(
        ["<|im_start|>", "<|im_end|>"], seed=4
    )
    assert_exact(tok, encoder, texts)
    stretches, tokens = encoder.cache_size()
    assert 0 < tokens <= 3000 and stretches >= 1


@pytest.mark.parametrize(
    "pre_tokenizer",
    [
        pre_tokenizers.ByteLevel(add_prefix_space=False),
        pre_tokenizers.Metaspace(prepend_scheme="first"),
        pre_tokenizers.Metaspace(prepend_scheme="always"),
        pre_tokenizers.Whitespace(),
    ],
    ids=["bytelevel", "metaspace-first", "metaspace-always", "whitespace"],
)
def test_any_tokenizer_is_exact_with_the_cache_on_or_off(pre_tokenizer):
    specials = ["<s>", "</s>", "[INST]"]
    tok = trained_bpe(pre_tokenizer, specials)
    encoder = SegmentedEncoder(tok, min_cached_chars=16)
    texts = prompts(["[INST]", "</s>"]) + prompts(["<s>", "[INST]"], seed=5)
    assert_exact(tok, encoder, texts)
    if isinstance(pre_tokenizer, pre_tokenizers.Metaspace) and "first" in repr(pre_tokenizer):
        # The first stretch is special to this pre-tokenizer: the self-check must notice.
        assert not encoder.enabled


def test_a_tokenizer_without_special_tokens_caches_whole_prompts():
    tok = trained_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False), [])
    encoder = SegmentedEncoder(tok, min_cached_chars=16)
    text = random_text(random.Random(6), 100)
    assert encoder.encode(text) == encoder.encode(text) == tok.encode(text).ids
    assert encoder.stats.hits == 1


def test_special_tokens_that_strip_whitespace_are_exact():
    # lstrip/rstrip special tokens eat the whitespace beside them, which a stretch-by-stretch
    # encoding would keep: the self-check must switch the cache off (or the results agree).
    from tokenizers import AddedToken

    tok = trained_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False), ["<s>"])
    tok.add_special_tokens([AddedToken("<x>", lstrip=True, rstrip=True, special=True)])
    encoder = SegmentedEncoder(tok, min_cached_chars=16)
    assert_exact(tok, encoder, prompts(["<x>", "<s>"]) + prompts(["<s>", "<x>"], seed=7))
