"""Engine log probabilities into OpenAI's shapes: token texts and exact bytes, alignment."""

import math

from dynamo.llm.logprobs import (
    TokenTexts,
    chat_logprobs,
    completion_logprobs,
    from_engine,
    prompt_from_engine,
)


def test_byte_level_tokens_give_exact_bytes_even_mid_character(byte_tokenizer):
    tok = byte_tokenizer
    texts = TokenTexts(tok)
    ids = tok.encode("é!").ids
    assert [texts.get(i)[1] for i in ids] == [[0xC3], [0xA9], [0x21]]
    assert texts.get(ids[0])[0] == "\ufffd"  # half a character
    assert texts.get(ids[2])[0] == "!"


def test_real_tokenizer_bytes_join_to_the_text(smollm2_gguf):
    from dynamo.llm.model_card import load_card

    tok = load_card(str(smollm2_gguf)).tokenizer()
    texts = TokenTexts(tok)
    text = "Hello wörld, 你好"
    ids = tok.encode(text, add_special_tokens=False).ids
    assert bytes(b for i in ids for b in texts.get(i)[1]).decode() == text


def delta():
    return {
        "token_ids": [33, 34],
        "log_probs": [-0.5, -1.0],
        "top_logprobs": [
            [
                {"rank": 1, "token_id": 33, "logprob": -0.5},
                {"rank": 2, "token_id": 35, "logprob": -2.0},
            ],
            [{"rank": 1, "token_id": 34, "logprob": -1.0, "token": "X", "bytes": [88]}],
        ],
    }


def test_from_engine_takes_only_the_tokens_the_answer_used(byte_tokenizer):
    texts = TokenTexts(byte_tokenizer)
    entries = from_engine(delta(), 1, texts)
    assert len(entries) == 1 and entries[0].logprob == -0.5
    assert [c.logprob for c in entries[0].top] == [-0.5, -2.0]
    assert from_engine({"token_ids": [1]}, 1, texts) is None


def test_engine_supplied_token_text_wins_and_token_ids_mode(byte_tokenizer):
    texts = TokenTexts(byte_tokenizer)
    entries = from_engine(delta(), 2, texts)
    assert entries[1].top[0].token == "X" and entries[1].top[0].bytes == [88]
    as_ids = from_engine(delta(), 2, texts, as_ids=True)
    assert as_ids[0].token == "token_id:33" and as_ids[0].top[1].token == "token_id:35"


def test_openai_shapes(byte_tokenizer):
    texts = TokenTexts(byte_tokenizer)
    entries = from_engine(delta(), 2, texts)
    chat = chat_logprobs(entries)
    assert chat["refusal"] is None
    assert set(chat["content"][0]) == {"token", "logprob", "bytes", "top_logprobs"}
    legacy = completion_logprobs(entries, 10)
    assert legacy["text_offset"] == [10, 10 + len(entries[0].token)]
    assert legacy["token_logprobs"] == [-0.5, -1.0]
    assert len(legacy["top_logprobs"][0]) == 2


def test_prompt_logprobs_first_token_has_none(byte_tokenizer):
    texts = TokenTexts(byte_tokenizer)
    positions = [
        None,
        [
            {"rank": 3, "token_id": 34, "logprob": -3.0},
            {"rank": 1, "token_id": 40, "logprob": -0.1},
        ],
    ]
    entries = prompt_from_engine(positions, [33, 34], texts)
    assert entries[0].logprob is None and entries[1].logprob == -3.0
    assert [c.logprob for c in entries[1].top] == [-0.1, -3.0]
    legacy = completion_logprobs(entries, 0)
    assert legacy["token_logprobs"][0] is None and legacy["top_logprobs"][0] is None
    assert not math.isnan(legacy["token_logprobs"][1])


def test_text_engine_logprobs_in_either_openai_shape():
    from dynamo.llm.logprobs import from_openai

    chat = {
        "content": [
            {
                "token": "a",
                "logprob": -0.1,
                "bytes": [97],
                "top_logprobs": [{"token": "a", "logprob": -0.1}],
            }
        ]
    }
    [entry] = from_openai(chat)
    assert (entry.token, entry.logprob, entry.top[0].bytes) == ("a", -0.1, [97])
    legacy = {
        "tokens": ["a", "b"],
        "token_logprobs": [-0.1, -0.2],
        "top_logprobs": [{"a": -0.1}, None],
    }
    entries = from_openai(legacy)
    assert completion_logprobs(entries, 0)["tokens"] == ["a", "b"]
    assert chat_logprobs(entries)["content"][1]["top_logprobs"] == []
    assert from_openai(None) is None
