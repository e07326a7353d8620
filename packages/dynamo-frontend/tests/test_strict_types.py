"""A request value of the wrong JSON type is a 400 naming the field (issue 16), as OpenAI and vLLM
answer, never coerced: pydantic's lax mode took `"stream": 0` as false, `"max_tokens": "5"` as 5
and `"n": 1.0` as 1. Raw JSON bodies through the real app (echo_full in process), on every route
that takes a body: chat, completions, embeddings, responses, Anthropic messages and tokenize.
Each case's body with the right type is answered 200 (or passes validation, where echo_full
cannot serve the route), so the 400 comes from the one wrong value."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {"model": "echo", "prompt": "hi"}
EMBEDDING = {"model": "echo", "input": "hi"}
RESPONSE = {"model": "echo", "input": "hi"}
MESSAGE = {"model": "echo", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}

#: (route, a valid body, the field, a value of the wrong JSON type for it).
WRONG_TYPES = [
    ("/v1/chat/completions", CHAT, "stream", 0),
    ("/v1/chat/completions", CHAT, "stream", "true"),
    ("/v1/chat/completions", CHAT, "max_tokens", "5"),
    ("/v1/chat/completions", CHAT, "max_tokens", 5.0),
    ("/v1/chat/completions", CHAT, "max_completion_tokens", True),
    ("/v1/chat/completions", CHAT, "temperature", "0.5"),
    ("/v1/chat/completions", CHAT, "n", 1.0),
    ("/v1/chat/completions", CHAT, "seed", "7"),
    ("/v1/chat/completions", CHAT, "logprobs", 1),
    ("/v1/chat/completions", CHAT, "user", 42),
    ("/v1/chat/completions", CHAT, "stop", 5),
    ("/v1/completions", COMPLETION, "stream", 1),
    ("/v1/completions", COMPLETION, "max_tokens", "5"),
    ("/v1/completions", COMPLETION, "top_p", "1"),
    ("/v1/completions", COMPLETION, "echo", "false"),
    ("/v1/completions", COMPLETION, "n", 1.5),
    ("/v1/completions", COMPLETION, "prompt", 5),
    ("/v1/embeddings", EMBEDDING, "dimensions", "8"),
    ("/v1/embeddings", EMBEDDING, "user", 1),
    ("/v1/embeddings", EMBEDDING, "input", ["a", 1]),
    ("/v1/responses", RESPONSE, "stream", 0),
    ("/v1/responses", RESPONSE, "max_output_tokens", "5"),
    ("/v1/responses", RESPONSE, "temperature", "0.5"),
    ("/v1/responses", RESPONSE, "store", "false"),
    ("/tokenize", COMPLETION, "add_special_tokens", 0),
]

#: Routes echo_full does not serve (it neither embeds nor has a tokenizer): a valid body passes
#: validation and is then refused for its model.
UNSERVED = {"/v1/embeddings", "/tokenize"}

ANTHROPIC_WRONG_TYPES = [
    ("stream", 0),
    ("max_tokens", "8"),
    ("max_tokens", 8.0),
    ("temperature", "0.5"),
    ("top_k", 1.0),
]


@pytest.fixture
async def client(translated):
    """The real app (Anthropic routes on) serving `echo` (echo_full), in process."""
    state, _ = translated.app_state(anthropic_api=True)
    async with translated.http_client(state) as http:
        yield http


async def post(client: httpx.AsyncClient, route: str, body: dict[str, Any]) -> httpx.Response:
    """POST the body as JSON text: `0`, `false`, `1.0` and `"5"` reach the server as written."""
    return await client.post(
        route, content=json.dumps(body), headers={"content-type": "application/json"}
    )


@pytest.mark.parametrize(
    ("route", "body", "field", "value"),
    WRONG_TYPES,
    ids=[f"{r}:{f}={v!r}" for r, _, f, v in WRONG_TYPES],
)
async def test_a_wrong_json_type_is_a_400_naming_the_field(client, route, body, field, value):
    response = await post(client, route, {**body, field: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == field, error
    assert field in error["message"]


@pytest.mark.parametrize(
    ("route", "body"), {(r, str(b)): (r, b) for r, b, _, _ in WRONG_TYPES}.values()
)
async def test_the_same_bodies_with_the_right_types_pass(client, route, body):
    response = await post(client, route, body)
    if route in UNSERVED:
        assert response.json()["error"]["param"] == "model", response.text
        return
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("field", "value"), ANTHROPIC_WRONG_TYPES)
async def test_anthropic_messages_refuse_a_wrong_type_in_anthropics_shape(client, field, value):
    response = await post(client, "/v1/messages", {**MESSAGE, field: value})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith(f"{field}:"), body


async def test_json_integers_are_valid_numbers_and_token_id_keys_are_text(client):
    """A whole number is a valid float (`"temperature": 1`), and a `logit_bias` key is a token
    id written as JSON's string key: strictness refuses neither."""
    chat = await post(client, "/v1/chat/completions", {**CHAT, "temperature": 1, "top_p": 1})
    assert chat.status_code == 200, chat.text
    message = await post(client, "/v1/messages", {**MESSAGE, "temperature": 0})
    assert message.status_code == 200, message.text
    # `report` declares every feature (echo_full refuses logit_bias as unsupported).
    bias = await post(
        client, "/v1/chat/completions", {**CHAT, "model": "report", "logit_bias": {"15": 1}}
    )
    assert bias.status_code == 200, bias.text
    bad_key = await post(client, "/v1/chat/completions", {**CHAT, "logit_bias": {"x": 1}})
    assert bad_key.status_code == 400
    assert bad_key.json()["error"]["param"].startswith("logit_bias")
