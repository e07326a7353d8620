"""The incremental decoder: UTF-8 safety, prompt context, every stop condition, and recovery.

Three tokenizers: a SentencePiece-style one with byte fallback (context-dependent leading space,
characters spelled as byte tokens), a byte-level BPE trained here, and the real SmolLM2 one.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)

from dynamo.llm.decoder import Decoder, DecodeResult, TokenPieces
from dynamo.llm.protocols.wire import FinishReason

PIECES = ["▁", "a", "b", "x", "y", "A", "é", "ab", "▁a", "▁hello", "▁world", "hel", "lo", "▁wor"]
PIECES += ["ld", "▁the", "▁end", "hello", "world", "▁中"]
WORDS = [" hello", " world", "é", " 中文", "中", " 🤖", "🎉🎉", " naïve", "\n", " ab", "aab", " x"]


def sentencepiece_tokenizer() -> Tokenizer:
    """Llama-style: `▁` for spaces, the first one stripped on decode, unknown characters as
    UTF-8 byte tokens `<0xE4>`, `</s>` special."""
    vocab = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)]
    vocab += [(f"<0x{b:02X}>", 0.0) for b in range(256)]
    vocab += [(p, -1.0 - i / 100) for i, p in enumerate(reversed(PIECES))]
    tok = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tok.add_special_tokens([AddedToken("<s>", special=True), AddedToken("</s>", special=True)])
    return tok


def byte_level_tokenizer() -> Tokenizer:
    """GPT-2 style byte-level BPE; the emoji it never saw stay split into byte tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["hello world café naïve 中文 测试 the end"] * 50 + ["ab aab abc"] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["</s>", "<pad>"],
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    return tok


@pytest.fixture(scope="module")
def sp() -> Tokenizer:
    return sentencepiece_tokenizer()


@pytest.fixture(scope="module")
def bl() -> Tokenizer:
    return byte_level_tokenizer()


@pytest.fixture(scope="module")
def smol(smollm2_card) -> Tokenizer:
    return smollm2_card.tokenizer()


@pytest.fixture(params=["sp", "bl", "smol"])
def any_tok(request) -> Tokenizer:
    return request.getfixturevalue(request.param)


def ids(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


def pieces(tok: Tokenizer, *names: str) -> list[int]:
    """Token ids by token name, to choose the token boundaries exactly."""
    out = [tok.token_to_id(n) for n in names]
    assert None not in out, names
    return out  # type: ignore[return-value]


def byte_ids(tok: Tokenizer, text: str) -> list[int]:
    return pieces(tok, *(f"<0x{b:02X}>" for b in text.encode()))


def run(
    decoder: Decoder, token_ids: list[int], per_step: int = 1
) -> tuple[str, DecodeResult | None]:
    """Feed the ids; the text a client would get, and the finishing result (None: none did)."""
    parts = []
    for i in range(0, len(token_ids), per_step):
        result = decoder.step(token_ids[i : i + per_step])
        parts.append(result.text)
        if result.finish_reason is not None:
            assert decoder.finished
            return "".join(parts), result
    return "".join(parts) + decoder.finish(), None


def random_text(seed: int, n_words: int = 300) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(WORDS) for _ in range(n_words))


# -- detokenization --------------------------------------------------------------------------


def test_partial_characters_yield_nothing_until_complete(any_tok):
    text = "x 🤖 中文 é 🎉"
    token_ids = ids(any_tok, text)
    decoder = Decoder(any_tok)
    out = [decoder.step([t]).text for t in token_ids]
    assert "" in out  # some character spans several tokens
    assert all("\ufffd" not in piece for piece in out)
    assert "".join(out) == any_tok.decode(token_ids) == text.lstrip(" ")


@pytest.mark.parametrize("seed", range(4))
def test_streamed_text_equals_full_decode(any_tok, seed):
    token_ids = ids(any_tok, random_text(seed))
    per_step = random.Random(seed).randint(1, 4)
    assert run(Decoder(any_tok), token_ids, per_step)[0] == any_tok.decode(token_ids)
    # Seeded with a prompt, the text is what the whole sequence decodes to after the prompt.
    prompt = ids(any_tok, "the prompt:")
    expected = any_tok.decode(prompt + token_ids)[len(any_tok.decode(prompt)) :]
    assert run(Decoder(any_tok, prompt_token_ids=prompt), token_ids, per_step)[0] == expected


def test_prompt_context_keeps_the_leading_space(sp):
    world = pieces(sp, "▁world")
    assert run(Decoder(sp), world)[0] == "world"  # the start of a text: stripped
    assert run(Decoder(sp, prompt_token_ids=ids(sp, "hello")), world)[0] == " world"


def test_prompt_ending_inside_a_character_does_not_leak(any_tok):
    prompt = ids(any_tok, "hello 🤖")[:-1]  # the emoji's last byte is missing
    text, _ = run(Decoder(any_tok, prompt_token_ids=prompt), ids(any_tok, "ab"))
    assert "hello" not in text and text.endswith("ab")


def test_skip_special_tokens(any_tok):
    special = any_tok.token_to_id("</s>") if any_tok.token_to_id("</s>") is not None else 0
    token_ids = [special, *ids(any_tok, "hi"), special, *ids(any_tok, " there"), special]
    skipped, _ = run(Decoder(any_tok, skip_special_tokens=True), token_ids)
    assert skipped == any_tok.decode(token_ids, skip_special_tokens=True)
    assert skipped.replace(" ", "") == "hithere"
    kept, _ = run(Decoder(any_tok), token_ids)
    assert kept == any_tok.decode(token_ids, skip_special_tokens=False)
    assert kept.count(any_tok.id_to_token(special)) == 3


def test_invalid_prefix_from_byte_fallback_is_recovered(sp):
    # "A" as a byte token is emitted; two more bytes make the run invalid, which byte fallback
    # decodes as "���", so the text already sent is no longer a prefix: DecodeStream raises.
    token_ids = [*byte_ids(sp, "A"), *pieces(sp, "<0xE4>", "<0xB8>", "▁a", "b")]
    decoder = Decoder(sp)
    text, result = run(decoder, token_ids)
    assert text.startswith("A") and text.endswith(" ab") and result is None
    assert decoder.completion_tokens == len(token_ids)


def test_invalid_bytes_are_not_held_forever(any_tok):
    # A lone continuation byte 0x80: `<0x80>` with byte fallback, `Ģ` in byte-level BPE.
    junk = any_tok.token_to_id("<0x80>")
    if junk is None:
        junk = any_tok.token_to_id("Ģ")
    decoder = Decoder(any_tok)
    out = [decoder.step([junk]).text for _ in range(30)]
    assert any(out[:10])  # given up waiting for the character to complete
    assert set("".join(out) + decoder.finish()) == {"\ufffd"}


def test_invalid_token_ids_are_counted_not_fatal(bl):
    decoder = Decoder(bl, max_tokens=10)
    token_ids = [-1, *ids(bl, "ab"), 2**40, 10**6]
    text, result = run(decoder, token_ids)
    assert text == "ab" and result is None
    assert decoder.completion_tokens == len(token_ids)


# -- stop conditions --------------------------------------------------------------------------


def test_stop_string_across_tokens(sp):
    token_ids = pieces(sp, "▁hello", "▁wor", "ld", "▁the", "▁end")
    decoder = Decoder(sp, stop=["lo wo"])
    out = [decoder.step([t]) for t in token_ids[:2]]
    assert [r.text for r in out] == ["hel", ""]  # "lo" and then "lo wor" held: they may match
    assert out[1].finish_reason is FinishReason.STOP and out[1].stop_reason == "lo wo"
    assert decoder.finished and decoder.completion_tokens == 2


def test_stop_string_overlapping_its_own_prefix(sp):
    decoder = Decoder(sp, stop=["ab"])
    out = [decoder.step([t]) for t in pieces(sp, "a", "a", "b", "x")[:3]]
    assert [r.text for r in out] == ["", "a", ""]
    assert out[2].finish_reason is FinishReason.STOP and out[2].stop_reason == "ab"


def test_stop_string_included_in_output(sp):
    token_ids = pieces(sp, "▁hello", "▁wor", "ld", "▁the", "▁end")
    text, result = run(Decoder(sp, stop=["o wo"], include_stop_str_in_output=True), token_ids)
    assert text == "hello wo" and result.stop_reason == "o wo"


def test_stop_string_split_inside_a_character(sp):
    # 中 is three byte tokens here: the stop string is only seen once the character is whole.
    token_ids = [*pieces(sp, "▁hello"), *byte_ids(sp, " 中"), *pieces(sp, "x", "y")]
    decoder = Decoder(sp, stop=["中x"])
    text, result = run(decoder, token_ids)
    assert text == "hello " and result.stop_reason == "中x"
    assert decoder.completion_tokens == len(token_ids) - 1
    text, result = run(Decoder(sp, stop=["中y"]), token_ids)
    assert text == "hello 中xy" and result is None


def test_held_text_is_released_when_no_stop_completes(any_tok):
    token_ids = ids(any_tok, "xyz ab")
    assert run(Decoder(any_tok, stop=["abcdef"]), token_ids)[0] == any_tok.decode(token_ids)


def test_hidden_eos_finishes_without_its_text_and_releases_the_jail(sp):
    eos = sp.token_to_id("</s>")
    decoder = Decoder(sp, stop=["abc"], hidden_stop_token_ids=[eos])
    text, result = run(decoder, [*pieces(sp, "x", "ab"), eos, *pieces(sp, "y")])
    assert text == "xab"  # "ab" was held for "abc", which never came
    assert result.finish_reason is FinishReason.EOS and result.stop_reason is None
    assert decoder.completion_tokens == 3  # the EOS counts


def test_hidden_eos_flushes_an_unfinished_character(bl):
    eos = bl.token_to_id("</s>")
    token_ids = ids(bl, "ab 🤖")[:-1]
    text, result = run(Decoder(bl, hidden_stop_token_ids=[eos]), [*token_ids, eos])
    assert text == bl.decode(token_ids) and text.endswith("\ufffd")
    assert result.finish_reason is FinishReason.EOS


def test_visible_stop_token_is_emitted(any_tok):
    token_ids = ids(any_tok, "ab hello world")
    stop_id = token_ids[1]
    decoder = Decoder(any_tok, stop_token_ids=[stop_id])
    text, result = run(decoder, token_ids)
    assert text == any_tok.decode(token_ids[:2])
    assert result.finish_reason is FinishReason.STOP and result.stop_reason == stop_id
    assert decoder.completion_tokens == 2


def test_stop_string_wins_over_a_visible_stop_token(sp):
    token_ids = pieces(sp, "x", "▁world", "y")
    text, result = run(Decoder(sp, stop=["wor"], stop_token_ids=[token_ids[1]]), token_ids)
    assert text == "x " and result.stop_reason == "wor"


def test_max_tokens_emits_the_last_token(any_tok):
    token_ids = ids(any_tok, "one two three four")
    decoder = Decoder(any_tok, max_tokens=2)
    text, result = run(decoder, token_ids)
    assert text == any_tok.decode(token_ids[:2])
    assert result.finish_reason is FinishReason.LENGTH and decoder.completion_tokens == 2


def test_max_tokens_inside_a_character_emits_what_decode_gives(bl):
    token_ids = ids(bl, "ab 🤖")
    n = len(token_ids) - 2  # two of the emoji's four bytes
    text, result = run(Decoder(bl, max_tokens=n), token_ids)
    assert text == bl.decode(token_ids[:n]) and text.endswith("\ufffd")
    assert result.finish_reason is FinishReason.LENGTH


def test_stream_ending_inside_a_character_flushes(bl):
    token_ids = ids(bl, "ab 🤖")[:-1]
    assert run(Decoder(bl), token_ids)[0] == bl.decode(token_ids)


def test_min_tokens_counts_the_current_token(sp):
    eos = sp.token_to_id("</s>")
    decoder = Decoder(sp, hidden_stop_token_ids=[eos], min_tokens=2)
    first = decoder.step([eos])
    assert first.text == "</s>" and first.finish_reason is None  # token 1 of 2: no checks
    second = decoder.step([eos])
    assert second.text == "" and second.finish_reason is FinishReason.EOS
    assert decoder.completion_tokens == 2


def test_min_tokens_suppresses_stop_strings_and_ids(sp):
    a, b = pieces(sp, "a", "b")
    decoder = Decoder(sp, stop=["a"], stop_token_ids=[b], min_tokens=3)
    text, result = run(decoder, [a, b, b])
    assert text == "abb" and result.stop_reason == b and decoder.completion_tokens == 3


def test_max_tokens_applies_below_min_tokens(sp):
    decoder = Decoder(sp, max_tokens=2, min_tokens=5, stop=["a"])
    text, result = run(decoder, pieces(sp, "a", "b", "a"))
    assert text == "ab" and result.finish_reason is FinishReason.LENGTH


def test_tokens_after_finish_are_ignored(bl):
    decoder = Decoder(bl, max_tokens=1)
    assert decoder.step(ids(bl, "hello world")).finish_reason is FinishReason.LENGTH
    assert decoder.completion_tokens == 1
    assert decoder.step(ids(bl, "more")) == DecodeResult("")
    assert decoder.finish() == "" and decoder.completion_tokens == 1


@pytest.mark.parametrize("seed", range(8))
def test_delta_grouping_does_not_change_the_result(any_tok, seed):
    rng = random.Random(seed)
    token_ids = ids(any_tok, random_text(seed, 80))
    stops = [rng.choice(WORDS).strip() or "\n" for _ in range(2)]
    kw = {
        "stop": stops,
        "stop_token_ids": [rng.choice(token_ids)],
        "min_tokens": rng.randint(0, 10),
        "max_tokens": rng.randint(20, 200),
        "include_stop_str_in_output": rng.random() < 0.5,
    }

    def outcome(per_step: int) -> tuple:
        decoder = Decoder(any_tok, **kw)
        text, result = run(decoder, token_ids, per_step)
        reason = (result.finish_reason, result.stop_reason) if result else None
        return text, reason, decoder.completion_tokens

    text, reason, _ = first = outcome(1)
    assert all(outcome(per_step) == first for per_step in (2, 3, 7))
    if reason is not None and isinstance(reason[1], str):
        if kw["include_stop_str_in_output"]:
            assert text.endswith(reason[1])
        elif kw["min_tokens"] == 0:
            assert not any(stop in text for stop in stops)


def test_from_request(bl):
    eos = bl.token_to_id("</s>")
    request = {
        "token_ids": ids(bl, "prompt"),
        "stop_conditions": {"max_tokens": 10, "stop": "b", "stop_token_ids_hidden": [eos]},
        "sampling_options": {"include_stop_str_in_output": True},
        "output_options": {"skip_special_tokens": True},
        "eos_token_ids": [eos],
    }
    text, result = run(Decoder.from_request(bl, request), [*ids(bl, "xab"), eos])
    assert text == "xab" and result.stop_reason == "b"
    request["stop_conditions"] = {
        "max_tokens": 4,
        "ignore_eos": True,
        "stop_token_ids_hidden": [eos],
    }
    decoder = Decoder.from_request(bl, request)
    text, result = run(decoder, [*ids(bl, "x"), eos, eos, *ids(bl, "y"), *ids(bl, "z")])
    assert text == "xy" and result.finish_reason is FinishReason.LENGTH
    request["stop_conditions"] = {"min_tokens": 2}
    request["output_options"] = {}
    text, result = run(Decoder.from_request(bl, request), [eos, eos, *ids(bl, "x")])
    assert text == "</s>" and result.finish_reason is FinishReason.EOS


# -- the real SmolLM2 tokenizer ---------------------------------------------------------------


def test_smollm2_chat_turn_ends_at_im_end(smol):
    im_end = smol.token_to_id("<|im_end|>")
    prompt = smol.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n").ids
    answer = ids(smol, "Hello! 👋 How can I help? 中文")
    decoder = Decoder(smol, prompt_token_ids=prompt, hidden_stop_token_ids=[im_end])
    text, result = run(decoder, [*answer, im_end, *ids(smol, "junk")])
    assert text == "Hello! 👋 How can I help? 中文"
    assert result.finish_reason is FinishReason.EOS
    assert decoder.completion_tokens == len(answer) + 1


def test_smollm2_long_random_text_with_stops(smol):
    text = random_text(99, 3000)
    stop = " 🤖\n"
    assert stop in text
    decoder = Decoder(smol, stop=[stop, "never there"], stop_token_ids=[smol.token_to_id("Ġzzz")])
    out, result = run(decoder, ids(smol, text), per_step=3)
    assert out == text[: text.index(stop)]
    assert result.finish_reason is FinishReason.STOP and result.stop_reason == stop


# -- TokenPieces: looked-up token texts ---------------------------------------------------------


def test_token_pieces_only_for_byte_level_decoders(sp, bl, smol):
    assert TokenPieces.of(sp) is None  # SentencePiece: a token's text depends on what precedes
    assert TokenPieces.of(bl) is not None
    assert TokenPieces.of(smol) is not None


@pytest.mark.parametrize("tok_name", ["bl", "smol"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("skip_special", [False, True])
def test_token_pieces_give_the_decoded_text(request, tok_name, seed, skip_special):
    """Random ids over the whole vocabulary (parts of characters, added and special tokens, ids
    outside it) and real text: the same text, token by token, as without the lookup."""
    tok: Tokenizer = request.getfixturevalue(tok_name)
    rng = random.Random(seed)
    size = tok.get_vocab_size(with_added_tokens=True)
    added = list(tok.get_added_tokens_decoder())
    token_ids = [rng.randrange(size) for _ in range(400)]
    token_ids += ids(tok, random_text(seed, 100)) + byte_level_split(tok, " 🤖中")
    token_ids += [rng.choice(added) for _ in range(5)] + [size + 10, -1]
    rng.shuffle(token_ids)
    prompt = ids(tok, "the prompt: 中")
    lookup = TokenPieces.of(tok)
    assert lookup is not None
    for per_step in (1, 3):
        expected = run(
            Decoder(tok, prompt_token_ids=prompt, skip_special_tokens=skip_special),
            token_ids,
            per_step,
        )
        got = run(
            Decoder(tok, prompt_token_ids=prompt, skip_special_tokens=skip_special, pieces=lookup),
            token_ids,
            per_step,
        )
        assert got == expected
    assert any(text is not None for text in lookup.values())  # the lookup was used
    assert any(text is None for text in lookup.values())  # and some tokens were decoded
    assert all(0 <= token < size for token in lookup)


def byte_level_split(tok: Tokenizer, text: str) -> list[int]:
    """`text` as one byte-level token per byte (multi-byte characters in parts)."""
    return [t for t in (tok.token_to_id(_byte_char(b)) for b in text.encode()) if t is not None]


def _byte_char(b: int) -> str:
    """GPT-2's byte -> printable character mapping (what byte-level vocabularies spell bytes as)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    if b in printable:
        return chr(b)
    return chr(256 + sum(1 for x in range(b) if x not in printable))


@pytest.mark.parametrize("tok_name", ["bl", "smol"])
def test_token_pieces_with_stop_strings_and_limits(request, tok_name):
    tok: Tokenizer = request.getfixturevalue(tok_name)
    token_ids = ids(tok, random_text(7, 200))
    lookup = TokenPieces.of(tok)
    cases: list[dict[str, Any]] = [
        {"stop": ["wor"]},
        {"stop": ["中文"], "include_stop_str_in_output": True},
        {"max_tokens": 17},
        {"stop_token_ids": [token_ids[30]]},
        {"hidden_stop_token_ids": [token_ids[40]], "min_tokens": 10},
    ]
    for kwargs in cases:
        assert run(Decoder(tok, pieces=lookup, **kwargs), token_ids) == run(
            Decoder(tok, **kwargs), token_ids
        ), kwargs
