"""SGLang stream items as our deltas: tokens, finish reasons, usage, logprobs, errors."""

from __future__ import annotations

import pytest

from dynamo.engines.sglang._output import DeltaMapper, logprob_fields, usage
from dynamo.llm.errors import EngineFailedError, InvalidRequestError


def item(ids, finish=None, **meta):
    return {
        "text": "ignored",
        "output_ids": ids,
        "meta_info": {"finish_reason": finish, "prompt_tokens": 3, "completion_tokens": 2, **meta},
    }


def test_tokens_stream_as_deltas_and_empty_items_are_skipped() -> None:
    mapper = DeltaMapper([9], None)
    assert mapper.delta(item([11, 12]), cancelled=False) == {"token_ids": [11, 12]}
    assert mapper.delta(item([]), cancelled=False) is None
    assert not mapper.finished


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ({"type": "stop", "matched": 9}, "stop"),  # a visible stop token
        ({"type": "stop", "matched": 2}, "eos"),  # EOS or a hidden stop token
        ({"type": "stop", "matched": "END"}, "stop"),
        ({"type": "length", "length": 16}, "length"),
    ],
)
def test_finish_reasons(finish, reason) -> None:
    mapper = DeltaMapper([9], None)
    delta = mapper.delta(item([2], finish, cached_tokens=1), cancelled=False)
    assert mapper.finished
    assert delta == {
        "token_ids": [2],
        "finish_reason": reason,
        "completion_usage": {
            "prompt_tokens": 3,
            "completion_tokens": 2,
            "total_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 1},
        },
    }


def test_an_abort_we_asked_for_is_cancelled() -> None:
    abort = {"type": "abort", "message": "Aborted", "status_code": None, "err_type": None}
    delta = DeltaMapper([], None).delta(item([], abort), cancelled=True)
    assert delta is not None and delta["finish_reason"] == "cancelled"


def test_aborts_we_did_not_ask_for_are_errors() -> None:
    rejected = {"type": "abort", "message": "input too long", "status_code": 400}
    with pytest.raises(InvalidRequestError, match="input too long"):
        DeltaMapper([], None).delta(item([], rejected), cancelled=False)
    failed = {"type": "abort", "message": "out of memory", "status_code": 500}
    with pytest.raises(EngineFailedError, match="out of memory"):
        DeltaMapper([], None).delta(item([], failed), cancelled=True)
    unasked = {"type": "abort", "message": "Aborted", "status_code": None}
    with pytest.raises(EngineFailedError):
        DeltaMapper([], None).delta(item([], unasked), cancelled=False)
    with pytest.raises(EngineFailedError, match="unknown reason"):
        DeltaMapper([], None).delta(item([], {"type": "mystery"}), cancelled=False)


def test_logprobs_of_a_chunk() -> None:
    meta = {
        "output_token_logprobs": [(-0.1, 11, None), (-0.2, 12, None)],
        "output_top_logprobs": [
            [(-0.1, 11, None), (-2.0, 13, None), (-3.0, 14, None)],
            [(-0.2, 12, None), (-1.9, 15, None), (-2.5, 16, None)],
        ],
    }
    assert logprob_fields([11, 12], meta, 2) == {
        "log_probs": [-0.1, -0.2],
        "top_logprobs": [
            [
                {"rank": 1, "token_id": 11, "logprob": -0.1},
                {"rank": 2, "token_id": 13, "logprob": -2.0},
            ],
            [
                {"rank": 1, "token_id": 12, "logprob": -0.2},
                {"rank": 2, "token_id": 15, "logprob": -1.9},
            ],
        ],
    }
    delta = DeltaMapper([], 2).delta(item([11, 12], **meta), cancelled=False)
    assert delta is not None and delta["log_probs"] == [-0.1, -0.2]


def test_logprobs_zero_gives_the_sampled_tokens_only() -> None:
    meta = {"output_token_logprobs": [(-0.5, 7, None)], "output_top_logprobs": None}
    assert logprob_fields([7], meta, 0) == {"log_probs": [-0.5], "top_logprobs": [[]]}


def test_misaligned_logprobs_are_an_engine_failure() -> None:
    with pytest.raises(EngineFailedError):
        logprob_fields([1, 2], {"output_token_logprobs": [(-0.5, 1, None)]}, 1)


def test_usage_without_cache_details() -> None:
    assert usage({"prompt_tokens": 4, "completion_tokens": 1}) == {
        "prompt_tokens": 4,
        "completion_tokens": 1,
        "total_tokens": 5,
    }
