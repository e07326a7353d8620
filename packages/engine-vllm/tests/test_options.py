"""PreprocessedRequest → vLLM SamplingParams kwargs, and vLLM outputs → our deltas (no vLLM)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from dynamo.engines.vllm._options import (
    finish_reason,
    logprob_fields,
    prompt_logprob_field,
    sampling_kwargs,
    structured_outputs_kwargs,
    usage,
)
from dynamo.llm.errors import ContextLengthExceededError, InvalidRequestError


@dataclass
class Logprob:  # vLLM's vllm.logprobs.Logprob, read by attribute
    logprob: float
    rank: int | None
    decoded_token: str | None = None


def request(**parts):
    return {"token_ids": [1, 2, 3], **parts}


def test_unset_options_are_openai_defaults_and_room_left():
    got = sampling_kwargs(request(), max_model_len=100)
    assert got == {
        "n": 1,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "min_p": 0.0,
        "seed": None,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "max_tokens": 97,
        "min_tokens": 0,
        "ignore_eos": False,
        "stop_token_ids": [],
        "detokenize": False,
        "skip_special_tokens": False,
    }


def test_every_sampling_option_maps_one_to_one():
    sampling = {"temperature": 0.0, "top_p": 0.5, "top_k": 7, "min_p": 0.1, "seed": 42,
                "repetition_penalty": 1.2, "presence_penalty": 0.3, "frequency_penalty": -0.4}  # fmt: skip
    got = sampling_kwargs(request(sampling_options=sampling), max_model_len=100)
    assert {k: got[k] for k in sampling} == sampling
    # top_k of -1 (vLLM's old "all") is all tokens too.
    got = sampling_kwargs(request(sampling_options={"top_k": -1}), max_model_len=100)
    assert got["top_k"] == 0


def test_stop_conditions_map_one_to_one():
    stop = {"max_tokens": 10, "min_tokens": 4, "stop_token_ids": [9], "stop_token_ids_hidden": [7],
            "stop": ["never passed"]}  # fmt: skip
    got = sampling_kwargs(request(stop_conditions=stop, eos_token_ids=[2]), max_model_len=100)
    assert got["max_tokens"] == 10
    assert got["min_tokens"] == 4
    assert got["ignore_eos"] is False
    assert got["stop_token_ids"] == [9, 7, 2]  # visible, hidden, EOS
    assert "stop" not in got  # stop strings are our decoder's job


def test_ignore_eos_drops_hidden_stops():
    stop = {"ignore_eos": True, "stop_token_ids": [9], "stop_token_ids_hidden": [7]}
    got = sampling_kwargs(request(stop_conditions=stop, eos_token_ids=[2]), max_model_len=100)
    assert got["ignore_eos"] is True
    assert got["stop_token_ids"] == [9]


def test_max_tokens_is_capped_by_the_context_and_min_tokens_by_max():
    got = sampling_kwargs(
        request(stop_conditions={"max_tokens": 50, "min_tokens": 20}), max_model_len=10
    )
    assert got["max_tokens"] == 7
    assert got["min_tokens"] == 7
    with pytest.raises(ContextLengthExceededError, match="maximum context length is 3"):
        sampling_kwargs(request(), max_model_len=3)


def test_output_and_optional_fields():
    got = sampling_kwargs(
        request(
            sampling_options={"logit_bias": {"5": -100}, "allowed_token_ids": [4, 5],
                              "guided_decoding": {"regex": "[ab]+"}},
            output_options={"logprobs": 2, "prompt_logprobs": 1},
        ),
        max_model_len=100,
    )  # fmt: skip
    assert got["logit_bias"] == {5: -100.0}
    assert got["allowed_token_ids"] == [4, 5]
    assert got["logprobs"] == 2
    assert got["prompt_logprobs"] == 1
    assert got["structured_outputs"] == {"regex": "[ab]+"}


@pytest.mark.parametrize(
    ("guided", "expected"),
    [
        ({"json": {"type": "object"}}, {"json": {"type": "object"}}),
        ({"choice": ["a", "b"]}, {"choice": ["a", "b"]}),
        ({"grammar": "root ::= 'x'"}, {"grammar": "root ::= 'x'"}),
        ({"regex": "x", "whitespace_pattern": " *"}, {"regex": "x", "whitespace_pattern": " *"}),
    ],
)
def test_guided_decoding_is_structured_outputs(guided, expected):
    assert structured_outputs_kwargs(guided) == expected


def test_unsupported_fields_are_refused_by_name():
    with pytest.raises(InvalidRequestError, match="bad_words_token_ids"):
        sampling_kwargs(request(sampling_options={"bad_words_token_ids": [[1]]}), 100)
    with pytest.raises(InvalidRequestError, match="use_beam_search"):
        sampling_kwargs(request(sampling_options={"use_beam_search": True}), 100)
    with pytest.raises(InvalidRequestError, match="structural_tag"):
        structured_outputs_kwargs({"structural_tag": {"x": 1}})


@pytest.mark.parametrize(
    ("reason", "stop_reason", "expected"),
    [
        (None, None, None),
        ("stop", None, "eos"),  # vLLM's own EOS
        ("stop", 7, "eos"),  # a hidden stop id (the card's EOS)
        ("stop", 9, "stop"),  # a visible stop id
        ("stop", "</s>", "stop"),
        ("length", None, "length"),
        ("abort", None, "cancelled"),
        ("error", None, "error"),
        ("repetition", None, "stop"),
        ("something new", None, "error"),
    ],
)
def test_finish_reasons(reason, stop_reason, expected):
    assert finish_reason(reason, stop_reason, visible_stop_ids=[9]) == expected


def test_logprobs_of_a_delta():
    positions = [
        {5: Logprob(-0.1, 1), 6: Logprob(-2.0, 2), 8: Logprob(-3.0, 3)},
        {9: Logprob(-4.0, 5), 6: Logprob(-0.5, 1), 5: Logprob(-1.5, 2)},  # sampled not in top
    ]
    got = logprob_fields([5, 9], positions, top=2)
    assert got["log_probs"] == [-0.1, -4.0]
    assert got["top_logprobs"] == [
        [{"rank": 1, "token_id": 5, "logprob": -0.1}, {"rank": 2, "token_id": 6, "logprob": -2.0}],
        [{"rank": 1, "token_id": 6, "logprob": -0.5}, {"rank": 2, "token_id": 5, "logprob": -1.5}],
    ]
    assert logprob_fields([5], [{5: Logprob(-0.1, 1)}], top=0)["top_logprobs"] == [[]]
    assert logprob_fields([5], None, top=1) == {}
    with pytest.raises(ValueError, match="2 logprob entries for 1 tokens"):
        logprob_fields([5], positions, top=1)


def test_prompt_logprobs_keep_every_entry_vllm_sent():
    got = prompt_logprob_field([None, {3: Logprob(-5.0, 40), 4: Logprob(-0.2, 1)}])
    assert got == [
        None,
        [{"rank": 1, "token_id": 4, "logprob": -0.2}, {"rank": 40, "token_id": 3, "logprob": -5.0}],
    ]


def test_usage_with_cached_tokens():
    assert usage(10, 3, 8) == {
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "total_tokens": 13,
        "prompt_tokens_details": {"cached_tokens": 8},
    }
    assert "prompt_tokens_details" not in usage(1, 1, None)
