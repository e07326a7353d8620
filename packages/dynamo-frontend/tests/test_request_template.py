from __future__ import annotations

import json

import openai
import pytest

from dynamo.frontend.flags import UsageError
from dynamo.frontend.request_template import RequestTemplate


def test_fills_only_missing_fields():
    t = RequestTemplate(model="m", temperature=0.3, max_completion_tokens=7)
    assert t.apply({"messages": []}) == {
        "messages": [],
        "model": "m",
        "temperature": 0.3,
        "max_completion_tokens": 7,
    }
    body = {"model": "x", "temperature": 1.0, "max_tokens": 2, "messages": []}
    assert t.apply(dict(body)) == body
    assert t.apply({"prompt": "p"})["max_tokens"] == 7


def test_bad_files(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text('{"model": "m", "colour": "red"}')
    with pytest.raises(UsageError, match="colour"):
        RequestTemplate.load(str(bad))
    with pytest.raises(UsageError, match="cannot read"):
        RequestTemplate.load(str(tmp_path / "missing.json"))


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 5}, "temperature"),
        ({"max_completion_tokens": "many"}, "max_completion_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_completion_tokens": True}, "max_completion_tokens"),
        ({"model": 3}, "model"),
        ({"model": ""}, "model"),
    ],
)
def test_values_are_checked_at_start_up(tmp_path, values, needle):
    """Issue 18 item 12: a bad value was accepted, then every request got a 400 about a field
    its client never sent."""
    path = tmp_path / "t.json"
    path.write_text(json.dumps(values))
    with pytest.raises(UsageError, match=needle):
        RequestTemplate.load(str(path))


def test_good_values_load(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"model": "m", "temperature": 0, "max_completion_tokens": 5}')
    assert RequestTemplate.load(str(path)) == RequestTemplate("m", 0, 5)


def test_server_applies_the_template(start_server, tmp_path):
    template = tmp_path / "template.json"
    template.write_text(json.dumps({"model": "echo", "max_completion_tokens": 3}))
    server = start_server(
        "out=echo_full", "--model-name", "echo", "--request-template", str(template)
    )
    client = openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0)
    resp = client.chat.completions.create(
        model="", messages=[{"role": "user", "content": "abcdef"}]
    )
    assert resp.choices[0].message.content == "abc"
    assert resp.choices[0].finish_reason == "length"
