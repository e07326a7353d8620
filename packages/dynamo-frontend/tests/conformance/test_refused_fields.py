"""Nothing silently ignored (issue 15 item 1): unknown fields and what no engine or not this
engine honours are a 400 naming the field; descriptive fields and sampling knobs are accepted."""

from __future__ import annotations

import pytest

from dynamo.testing.openai_api import HI, raw_echo, refused


async def test_unknown_field_is_a_400_naming_it(client):
    message = await refused(
        client.chat.completions.create(model="mock", messages=HI, extra_body={"frobnicate": True}),
        "frobnicate",
    )
    assert "frobnicate" in message and "unrecognized request field" in message
    await refused(
        client.completions.create(model="mock", prompt="x", extra_body={"nvext": {"zzz": 1}}),
        "nvext.zzz",
    )


async def test_descriptive_fields_are_accepted(client):
    resp = await client.chat.completions.create(
        model="mock",
        messages=HI,
        max_tokens=3,
        user="u-1",
        metadata={"team": "a"},
        store=False,
        service_tier="auto",
        extra_body={"prompt_cache_key": "k", "safety_identifier": "s"},
    )
    assert resp.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"store": True}, "store"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"extra_body": {"web_search_options": {}}}, "web_search_options"),
        ({"extra_body": {"spaces_between_special_tokens": False}}, "spaces_between_special_tokens"),
    ],
)
async def test_fields_no_engine_honours_are_refused(client, kw, param):
    await refused(client.chat.completions.create(model="mock", messages=HI, **kw), param)


async def test_completions_suffix_is_refused(client):
    await refused(client.completions.create(model="mock", prompt="x", suffix="y"), "suffix")


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
                }
            },
            "response_format",
        ),
        ({"extra_body": {"guided_regex": "[0-9]+"}}, "guided_regex"),
        ({"extra_body": {"nvext": {"guided_choice": ["a", "b"]}}}, "nvext.guided_choice"),
        ({"extra_body": {"nvext": {"max_thinking_tokens": 5}}}, "nvext.max_thinking_tokens"),
    ],
)
async def test_features_the_engine_lacks_are_refused_for_that_model(client, kw, param):
    message = await refused(client.chat.completions.create(model="echo", messages=HI, **kw), param)
    assert "'echo'" in message


async def test_two_structured_output_requests_are_refused(client):
    await refused(
        client.chat.completions.create(
            model="mock",
            messages=HI,
            response_format={"type": "json_object"},
            extra_body={"guided_regex": "a"},
        ),
        "guided_regex",
    )


async def test_sampling_knobs_are_accepted_by_an_unsampled_engine(client):
    resp = await client.chat.completions.create(
        model="echo",
        max_tokens=2,
        temperature=0.3,
        top_p=0.9,
        seed=4,
        logit_bias={"5": 1.0},
        frequency_penalty=0.1,
        extra_body={"top_k": 5, "min_p": 0.1, "repetition_penalty": 1.1},
        **{k: v for k, v in raw_echo("abc").items() if k != "extra_body"},
    )
    assert resp.usage.completion_tokens == 2
