"""`/tokenize`, `/detokenize`, `/v1/models` (aliases, max_model_len), `/v1/models/{id}`,
`/version` and Anthropic's `count_tokens`, in process over `httpx.ASGITransport`, with the
SmolLM2 GGUF's tokenizer and chat template."""

from __future__ import annotations

from importlib.metadata import version

import httpx
import pytest

from dynamo.engines.echo import EchoCoreEngine, EchoFullEngine
from dynamo.frontend.http.app import AppState, build_app
from dynamo.frontend.http.tokenize.protocol import TokenizeResponse
from dynamo.llm import ModelType
from dynamo.llm.model_card import load_card
from dynamo.llm.pipeline import BackendModel, OpenAIEngineModel
from dynamo.llm.protocols.openai import ModelCard

CHAT = [{"role": "user", "content": "Hi there"}]


@pytest.fixture(scope="module")
def card(smollm2_gguf):
    return load_card(str(smollm2_gguf), model_name="smol")


@pytest.fixture
def client(card):
    state = AppState(anthropic_api=True)
    state.models.add(BackendModel("smol", card, EchoCoreEngine()), ["smol-alias", "other"])
    # A text-level model whose card has a tokenizer (as an out=dyn Chat worker's may).
    serves = frozenset({ModelType.Chat})
    state.models.add(OpenAIEngineModel("text-level", card, EchoFullEngine(), serves))
    transport = httpx.ASGITransport(app=build_app(state))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_tokenize_prompt_and_detokenize(client, card):
    expected = card.tokenizer().encode("hello world", add_special_tokens=True)
    r = await client.post(
        "/tokenize", json={"model": "smol", "prompt": "hello world", "return_token_strs": True}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    TokenizeResponse.model_validate(body)  # what /openapi.json publishes
    assert body == {
        "count": len(expected.ids),
        "max_model_len": card.context_length,
        "tokens": expected.ids,
        "token_strs": expected.tokens,
    }
    r = await client.post("/detokenize", json={"model": "smol-alias", "tokens": body["tokens"]})
    assert r.json() == {"prompt": "hello world"}
    r = await client.post("/detokenize", json={"model": "smol", "tokens": [10**9]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tokens"


async def test_tokenize_chat_messages(client, card):
    r = await client.post("/tokenize", json={"model": "smol", "messages": CHAT})
    tokens = r.json()["tokens"]
    for _ in range(2):  # the text-level model's preprocessor is made once, then reused
        r = await client.post("/tokenize", json={"model": "text-level", "messages": CHAT})
        assert r.json()["tokens"] == tokens
    text = card.tokenizer().decode(tokens, skip_special_tokens=False)
    assert text.endswith("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")
    r = await client.post(
        "/tokenize", json={"model": "smol", "messages": CHAT, "add_generation_prompt": False}
    )
    assert (
        card.tokenizer()
        .decode(r.json()["tokens"], skip_special_tokens=False)
        .endswith("Hi there<|im_end|>\n")
    )
    # Anthropic's count_tokens counts the same prompt.
    r = await client.post("/v1/messages/count_tokens", json={"model": "smol", "messages": CHAT})
    assert r.json() == {"input_tokens": len(tokens)}


async def test_tokenize_errors(client):
    r = await client.post("/tokenize", json={"model": "nope", "prompt": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = await client.post("/tokenize", json={"model": "smol", "prompt": "x", "bogus": 1})
    assert r.status_code == 400 and "bogus" in r.json()["error"]["message"]


async def test_models_rows_aliases_and_version(client, card):
    rows = (await client.get("/v1/models")).json()["data"]
    assert [row["id"] for row in rows] == ["other", "smol", "smol-alias", "text-level"]
    for row in rows[:3]:
        ModelCard.model_validate(row)
        assert row["owned_by"] == "dynamo" and row["object"] == "model"
        assert row["root"] == "smol" and row["max_model_len"] == card.context_length
    r = await client.get("/v1/models/smol-alias")
    assert r.status_code == 200 and r.json()["id"] == "smol-alias"
    r = await client.get("/v1/models/missing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert (await client.get("/version")).json() == {"version": version("dynamo-frontend")}
    # A request by alias is answered by the canonical model, named as such.
    r = await client.post(
        "/v1/chat/completions", json={"model": "other", "messages": CHAT, "max_tokens": 3}
    )
    assert r.status_code == 200 and r.json()["model"] == "smol"
