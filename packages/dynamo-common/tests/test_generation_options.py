"""GenerationOptions: one reading of a PreprocessedRequest for the library engines."""

from __future__ import annotations

from enum import IntEnum

import pytest

from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.generation_options import OPTIONAL_FIELDS, GenerationOptions


def request(**parts):
    return {"model": "m", "token_ids": [1, 2, 3], **parts}


def test_unset_options_take_openai_defaults() -> None:
    opts = GenerationOptions.from_request(request())
    assert opts.prompt == [1, 2, 3]
    assert (opts.temperature, opts.top_p, opts.top_k, opts.min_p) == (1.0, 1.0, None, 0.0)
    assert (opts.repetition_penalty, opts.presence_penalty, opts.frequency_penalty) == (1, 0, 0)
    assert opts.seed is None and opts.max_tokens is None and opts.min_tokens == 0
    assert opts.stop_token_ids == () and not opts.ignore_eos and not opts.greedy
    assert opts.guided_kind() is None


def test_every_knob_is_read() -> None:
    opts = GenerationOptions.from_request(
        request(
            sampling_options={
                "temperature": 0,
                "top_p": 0.5,
                "top_k": 7,
                "min_p": 0.1,
                "repetition_penalty": 1.2,
                "presence_penalty": 0.3,
                "frequency_penalty": -0.4,
                "seed": 42,
                "logit_bias": {"5": -100},
                "guided_decoding": {"regex": "[ab]+"},
            },
            stop_conditions={"max_tokens": 9, "min_tokens": 2},
            output_options={"logprobs": 3},
        ),
        supports={"logit_bias", "guided_decoding", "logprobs"},
    )
    assert opts.greedy and opts.top_p == 0.5 and opts.top_k == 7 and opts.min_p == 0.1
    assert (opts.repetition_penalty, opts.presence_penalty, opts.frequency_penalty) == (
        1.2,
        0.3,
        -0.4,
    )
    assert opts.seed == 42 and opts.max_tokens == 9 and opts.min_tokens == 2
    assert opts.logit_bias == {5: -100.0}
    assert opts.guided_kind() == ("regex", "[ab]+")
    assert opts.logprobs == 3


@pytest.mark.parametrize("top_k", [0, -1])
def test_non_positive_top_k_means_all(top_k: int) -> None:
    assert GenerationOptions.from_request(request(sampling_options={"top_k": top_k})).top_k is None


def test_stop_ids_are_visible_then_hidden_then_eos_without_duplicates() -> None:
    opts = GenerationOptions.from_request(
        request(
            stop_conditions={"stop_token_ids": [9, 8], "stop_token_ids_hidden": [2, 9]},
            eos_token_ids=[2, 0],
        )
    )
    assert opts.stop_token_ids == (9, 8, 2, 0)


def test_ignore_eos_keeps_only_the_visible_stop_ids() -> None:
    opts = GenerationOptions.from_request(
        request(
            stop_conditions={
                "ignore_eos": True,
                "stop_token_ids": [9],
                "stop_token_ids_hidden": [2],
            },
            eos_token_ids=[2],
        )
    )
    assert opts.ignore_eos and opts.stop_token_ids == (9,)


@pytest.mark.parametrize(
    ("sampling", "output", "param"),
    [
        ({"n": 2}, {}, "n"),
        ({"best_of": 3}, {}, "best_of"),
        ({"use_beam_search": True}, {}, "use_beam_search"),
        ({"logit_bias": {"1": 1.0}}, {}, "logit_bias"),
        ({"guided_decoding": {"json": {"type": "object"}}}, {}, "guided_decoding"),
        ({"allowed_token_ids": [1]}, {}, "allowed_token_ids"),
        ({}, {"logprobs": 0}, "logprobs"),
        ({}, {"prompt_logprobs": 1}, "prompt_logprobs"),
    ],
)
def test_unsupported_fields_are_refused_by_name(sampling, output, param) -> None:
    with pytest.raises(InvalidRequestError) as e:
        GenerationOptions.from_request(
            request(sampling_options=sampling, output_options=output), supports=()
        )
    assert e.value.param == param


def test_stop_conditions_and_batches_the_engine_cannot_honour_are_refused() -> None:
    with pytest.raises(InvalidRequestError) as e:
        GenerationOptions.from_request(request(stop_conditions={"max_thinking_tokens": 64}))
    assert e.value.param == "max_thinking_tokens"
    with pytest.raises(InvalidRequestError) as e:
        GenerationOptions.from_request(request(batch_token_ids=[[1], [2]]))
    assert e.value.param == "batch_token_ids"


def test_unset_optional_fields_pass_an_engine_that_supports_nothing() -> None:
    GenerationOptions.from_request(
        request(
            sampling_options={"n": 1, "use_beam_search": False, "logit_bias": None},
            output_options={"logprobs": None, "skip_special_tokens": True},
        ),
        supports=(),
    )
    assert {"logprobs", "guided_decoding"} <= OPTIONAL_FIELDS


def test_bad_requests() -> None:
    with pytest.raises(InvalidRequestError):
        GenerationOptions.from_request({"model": "m", "token_ids": []})
    with pytest.raises(InvalidRequestError):
        GenerationOptions.from_request(request(stop_conditions={"max_tokens": -1}))
    opts = GenerationOptions.from_request(
        request(sampling_options={"guided_decoding": {"backend": "x"}}),
        supports={"guided_decoding"},
    )
    with pytest.raises(InvalidRequestError):
        opts.guided_kind()


@pytest.mark.parametrize("bad", [[1, True], [1, 2.0], [1, "2"], [1, None], "12", {"a": 1}])
def test_token_ids_must_be_integers_and_not_booleans(bad) -> None:
    with pytest.raises(InvalidRequestError, match="token_ids must be a list of token ids"):
        GenerationOptions.from_request({"model": "m", "token_ids": bad})


def test_token_ids_may_be_any_int_kind() -> None:
    class Id(IntEnum):
        A = 7

    assert GenerationOptions.from_request({"token_ids": (1, 2, 3)}).prompt == [1, 2, 3]
    assert GenerationOptions.from_request({"token_ids": [1, Id.A]}).prompt == [1, 7]
