"""Text-level engines (echo_full behind the request plane's codec): what the frontend cannot do
for them is refused; what they get is JSON-safe and carries the sampling options."""

from __future__ import annotations

import pytest

from dynamo.testing.openai_api import HI, WEATHER_TOOL, refused


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"tools": [WEATHER_TOOL]}, "tools"),
        ({"extra_body": {"stop_token_ids": [1]}}, "stop_token_ids"),
        ({"extra_body": {"min_tokens": 2}}, "min_tokens"),
        ({"extra_body": {"chat_template_kwargs": {"x": 1}}}, "chat_template_kwargs"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
    ],
)
async def test_text_engine_refuses_what_only_detokenizing_can_do(client, kw, param):
    await refused(client.chat.completions.create(model="echo-full", messages=HI, **kw), param)


async def test_text_engine_body_is_json_safe(client):
    # What a text-level engine gets crosses the network: token-id keys must be strings.
    resp = await client.chat.completions.create(
        model="echo-full", messages=[{"role": "user", "content": "ab"}], logit_bias={"5": 1.0}
    )
    assert resp.choices[0].message.content == "ab"


async def test_text_engine_greed_sampling_reaches_the_body(client):
    seen = []
    model = client._client._transport.app.state.dynamo.models.get("echo-full")
    original = model.engine.generate

    def spy(body, context):
        seen.append(body)
        return original(body, context)

    model.engine.generate = spy
    await client.chat.completions.create(
        model="echo-full",
        messages=[{"role": "user", "content": "a"}],
        temperature=0.9,
        extra_body={"nvext": {"greed_sampling": True}},
    )
    assert seen[0]["temperature"] == 0.0


async def test_text_engine_n_choices(client):
    resp = await client.chat.completions.create(
        model="echo-full", messages=[{"role": "user", "content": "abc"}], n=2
    )
    assert [c.message.content for c in resp.choices] == ["abc", "abc"]
    assert [c.index for c in resp.choices] == [0, 1]
