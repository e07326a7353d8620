from __future__ import annotations

import pytest
from pydantic import ValidationError

from dynamo.llm.protocols import (
    ChatCompletionRequest,
    CompletionRequest,
    FinishReason,
    LLMEngineOutput,
)

MSG = [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": MSG, "brand_new_openai_field": 1},
        {"model": "m", "messages": MSG, "nvext": {"not_an_nvext_field": 1}},
        {"model": "m", "messages": MSG, "stream_options": {"include_usage": True, "x": 1}},
        {
            "model": "m",
            "messages": MSG,
            "tools": [{"type": "function", "function": {"name": "f"}, "x": 1}],
        },
    ],
)
def test_unknown_fields_are_refused(body):
    with pytest.raises(ValidationError) as e:
        ChatCompletionRequest.model_validate(body)
    assert e.value.errors()[0]["type"] == "extra_forbidden"


def test_completion_unknown_fields_are_refused():
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": "m", "prompt": "x", "messages": MSG})


def test_descriptive_fields_are_accepted():
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": MSG,
            "user": "u1",
            "metadata": {"k": "v"},
            "service_tier": "auto",
            "store": False,
            "prompt_cache_key": "abc",
            "safety_identifier": "s",
        }
    )
    assert req.user == "u1"


def test_message_extra_keys_reach_the_template():
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "assistant", "content": "x", "reasoning_content": "r"}],
        }
    )
    assert req.messages[0].model_extra == {"reasoning_content": "r"}


@pytest.mark.parametrize(
    "bad",
    [
        {"model": "m", "messages": []},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
        {"model": "m", "messages": MSG, "n": 0},
        {"model": "m", "messages": MSG, "n": 1000},
        {"model": "m", "messages": MSG, "stop": [str(i) for i in range(33)]},
        {"messages": MSG},
        {"model": "m", "messages": MSG, "top_logprobs": 2},
        {"model": "m", "messages": MSG, "logprobs": True, "top_logprobs": 21},
        {"model": "m", "messages": MSG, "logit_bias": {"5": 101}},
        {"model": "m", "messages": MSG, "response_format": {"type": "json_schema"}},
        {"model": "m", "messages": MSG, "response_format": {"type": "yaml"}},
        {"model": "m", "messages": MSG, "tool_choice": "required"},
        {
            "model": "m",
            "messages": MSG,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "g"}},
        },
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


def test_up_to_32_stop_strings():
    stops = [str(i) for i in range(32)]
    assert (
        ChatCompletionRequest.model_validate({"model": "m", "messages": MSG, "stop": stops}).stop
        == stops
    )


def test_completion_prompt_forms():
    assert CompletionRequest(model="m", prompt=["only"]).single_prompt() == "only"
    assert CompletionRequest(model="m", prompt=[[1, 2]]).single_prompt() == [1, 2]
    assert CompletionRequest(model="m", prompt=[1, 2]).prompts() == [[1, 2]]
    assert CompletionRequest(model="m", prompt=["a", "b"]).prompts() == ["a", "b"]
    assert CompletionRequest(model="m", prompt=[[1], [2, 3]]).prompts() == [[1], [2, 3]]
    with pytest.raises(ValidationError):
        CompletionRequest(model="m", prompt=[])


def test_completions_default_max_tokens_is_openais_16():
    assert CompletionRequest(model="m", prompt="x").requested_max_tokens == 16
    assert CompletionRequest(model="m", prompt="x", max_tokens=3).requested_max_tokens == 3


@pytest.mark.parametrize(
    "bad",
    [
        {"best_of": 1, "n": 2},
        {"best_of": 3, "stream": True},
        {"prompt": [[]]},
        {"n": 100, "prompt": ["a", "b"]},
        {"logprobs": 21},
    ],
)
def test_invalid_completion_requests(bad):
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": "m", "prompt": "x", **bad})


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


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [0, -1])
def test_max_tokens_below_one_is_refused(field, value):
    """Issue 18 item 8: max_tokens 0 returned a token (llama.cpp) or the whole text (echo_full);
    OpenAI and vLLM refuse it, for every engine."""
    with pytest.raises(ValidationError, match=field):
        ChatCompletionRequest.model_validate({"model": "m", "messages": MSG, field: value})
    if field == "max_tokens":
        with pytest.raises(ValidationError, match=field):
            CompletionRequest.model_validate({"model": "m", "prompt": "p", field: value})
    assert ChatCompletionRequest.model_validate({"model": "m", "messages": MSG, field: 1})


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "text", "text": None}],
        [{"type": "text", "text": 5}],
        [{"type": "text"}],
        [{"text": "no type"}],
    ],
)
def test_malformed_content_parts_are_refused(content):
    """Issue 18 item 9: `"text": null` reached the templates (and `m.text()`) and was a 500."""
    with pytest.raises(ValidationError, match="content part 0"):
        ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": content}]}
        )
