"""Incremental decoding on the real SmolLM2 tokenizer: UTF-8 safety and every stop condition."""

from __future__ import annotations

import random

import pytest

from dynamo.llm.decoder import Decoder
from dynamo.llm.protocols.wire import FinishReason

EOS = 2


@pytest.fixture(scope="module")
def tok(smollm2_card):
    return smollm2_card.tokenizer()


def ids(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


def run(decoder: Decoder, token_ids: list[int], per_step: int = 1):
    parts, result = [], None
    for i in range(0, len(token_ids), per_step):
        result = decoder.step(token_ids[i : i + per_step])
        parts.append(result.text)
        if result.finish_reason is not None:
            return "".join(parts), result
    return "".join(parts) + decoder.finish(), result


def test_multibyte_characters_never_split(tok):
    text = "🤖 中文 テスト émoji"
    token_ids = ids(tok, text)
    assert len(token_ids) > len(text.split())  # some characters span several tokens
    decoder = Decoder(tok)
    pieces = [decoder.step([t]).text for t in token_ids]
    for piece in pieces:
        piece.encode("utf-8")  # a lone surrogate or replacement would show up here
        assert "\ufffd" not in piece
    assert "".join(pieces) == text


@pytest.mark.parametrize("seed", range(5))
def test_streamed_text_equals_full_decode(tok, seed):
    rng = random.Random(seed)
    words = [
        "hello",
        " wörld",
        " 🤖",
        "中文",
        "\n",
        "  ",
        "code()",
        " naïve",
        "テ",
        "!",
        "🎉🎉",
        " 42",
    ]
    text = "".join(rng.choice(words) for _ in range(200))
    token_ids = ids(tok, text)
    streamed, _ = run(
        Decoder(tok, prompt_token_ids=ids(tok, "prompt: ")), token_ids, per_step=rng.randint(1, 3)
    )
    assert streamed == tok.decode(token_ids, skip_special_tokens=False)


def test_hidden_eos_finishes_without_text(tok):
    text, result = run(
        Decoder(tok, hidden_stop_token_ids=[EOS]),
        [*ids(tok, "Hello there"), EOS, *ids(tok, "after")],
    )
    assert text == "Hello there"
    assert result.finish_reason is FinishReason.EOS and result.stop_reason is None


def test_visible_stop_token_is_emitted(tok):
    stop_id = ids(tok, " there")[0]
    text, result = run(Decoder(tok, stop_token_ids=[stop_id]), ids(tok, "Hello there friend"))
    assert text == "Hello there"
    assert result.finish_reason is FinishReason.STOP and result.stop_reason == stop_id


def test_stop_string_across_tokens(tok):
    decoder = Decoder(tok, stop=["three fo"])
    text, result = run(decoder, ids(tok, "one two three four five"))
    assert text == "one two "
    assert result.finish_reason is FinishReason.STOP and result.stop_reason == "three fo"


def test_stop_string_included(tok):
    text, _ = run(
        Decoder(tok, stop=[" two"], include_stop_str_in_output=True), ids(tok, "one two three")
    )
    assert text == "one two"


def test_stop_string_inside_multibyte_sequence(tok):
    text, result = run(Decoder(tok, stop=["🎉"]), ids(tok, "party 🎉 time"))
    assert text == "party "
    assert result.stop_reason == "🎉"


def test_held_back_text_is_released_at_the_end(tok):
    text, result = run(Decoder(tok, stop=["abcdef"]), ids(tok, "xyz abc"))
    assert text == "xyz abc"
    assert result.finish_reason is None


def test_max_tokens_emits_the_last_token(tok):
    token_ids = ids(tok, "one two three four")
    text, result = run(Decoder(tok, max_tokens=2), token_ids)
    assert text == tok.decode(token_ids[:2])
    assert result.finish_reason is FinishReason.LENGTH


def test_min_tokens_suppresses_stops(tok):
    token_ids = [EOS, *ids(tok, "Hi"), EOS]
    decoder = Decoder(tok, hidden_stop_token_ids=[EOS], min_tokens=2)
    text, result = run(decoder, token_ids)
    assert result.finish_reason is FinishReason.EOS
    assert decoder.completion_tokens == len(token_ids)
    assert text.endswith("Hi") and text.startswith("<|im_end|>")


def test_tokens_after_finish_are_ignored(tok):
    decoder = Decoder(tok, max_tokens=1)
    result = decoder.step(ids(tok, "one two three"))
    assert result.finish_reason is FinishReason.LENGTH
    assert decoder.completion_tokens == 1
    assert decoder.step(ids(tok, "more")).text == ""


def test_from_request_honours_ignore_eos(tok):
    request = {
        "token_ids": ids(tok, "prompt"),
        "stop_conditions": {"max_tokens": 10, "ignore_eos": True, "stop_token_ids_hidden": [EOS]},
        "eos_token_ids": [EOS],
    }
    text, result = run(Decoder.from_request(tok, request), [*ids(tok, "a"), EOS, *ids(tok, "b")])
    assert "<|im_end|>" in text and result is not None
    request["stop_conditions"]["ignore_eos"] = False
    text, result = run(Decoder.from_request(tok, request), [*ids(tok, "a"), EOS, *ids(tok, "b")])
    assert text == "a" and result.finish_reason is FinishReason.EOS


def test_skip_special_tokens(tok):
    text, _ = run(Decoder(tok, skip_special_tokens=True), [1, *ids(tok, "hi"), 2])
    assert text == "hi"
