from __future__ import annotations

import pytest
from pydantic import ValidationError

from dynamo.llm.protocols import (
    ChatCompletionRequest,
    CompletionRequest,
    FinishReason,
    LLMEngineOutput,
)


def test_unknown_fields_are_kept_not_rejected():
    req = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "brand_new_openai_field": 1}
    )
    assert req.model_extra == {"brand_new_openai_field": 1}


@pytest.mark.parametrize(
    "bad",
    [
        {"model": "m", "messages": []},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2},
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "stop": ["a", "b", "c", "d", "e"],
        },
        {"messages": [{"role": "user", "content": "x"}]},
    ],
)
def test_invalid_requests(bad):
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate(bad)


def test_max_completion_tokens_wins():
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 5,
            "max_completion_tokens": 7,
        }
    )
    assert req.requested_max_tokens == 7


def test_multipart_content_text():
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ],
        }
    )
    assert req.messages[0].text() == "ab"


def test_completion_prompt_forms():
    assert CompletionRequest(model="m", prompt=["only"]).single_prompt() == "only"
    assert CompletionRequest(model="m", prompt=[[1, 2]]).single_prompt() == [1, 2]
    with pytest.raises(ValidationError, match="batched"):
        CompletionRequest(model="m", prompt=["a", "b"])


@pytest.mark.parametrize(
    ("wire", "reason", "openai"),
    [
        ("eos", FinishReason.EOS, "stop"),
        ("abort", FinishReason.CANCELLED, "stop"),
        ({"error": "x"}, FinishReason.ERROR, "error"),
        ("length", FinishReason.LENGTH, "length"),
    ],
)
def test_finish_reasons(wire, reason, openai):
    assert FinishReason.parse(wire) is reason
    assert reason.to_openai() == openai


def test_engine_output_accepts_upstream_shapes():
    out = LLMEngineOutput.model_validate(
        {"token_ids": [1], "finish_reason": {"error": "boom"}, "future_field": 1}
    )
    assert FinishReason.parse(out.finish_reason) is FinishReason.ERROR


def test_a_stop_string_longer_than_the_limit_is_refused():
    """Issue 18 item 2: a 100 KB stop string was accepted (and took the server to ~5 GB)."""
    from dynamo.llm.protocols.openai import MAX_STOP_LENGTH

    ok = {"model": "m", "messages": MSG, "stop": ["x" * MAX_STOP_LENGTH]}
    assert ChatCompletionRequest.model_validate(ok).stop == ["x" * MAX_STOP_LENGTH]
    with pytest.raises(ValidationError, match="at most 1024 characters"):
        ChatCompletionRequest.model_validate({**ok, "stop": ["x" * (MAX_STOP_LENGTH + 1)]})
