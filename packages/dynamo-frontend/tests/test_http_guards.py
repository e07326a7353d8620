"""API keys, CORS and the body limit, in process over `httpx.ASGITransport` (the real app)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from dynamo.engines.echo import EchoFullEngine
from dynamo.frontend.http.access import ApiKeys
from dynamo.frontend.http.app import AppState, build_app
from dynamo.frontend.http.options import HttpOptions
from dynamo.llm import ModelType
from dynamo.llm.pipeline import OpenAIEngineModel

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


def app_with(options: HttpOptions):
    state = AppState(options=options)
    engine = EchoFullEngine()
    serves = frozenset({ModelType.Chat, ModelType.Completion})
    state.models.add(OpenAIEngineModel("echo", None, engine, serves))
    return build_app(state)


def client_for(options: HttpOptions, **kw) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app_with(options))
    return httpx.AsyncClient(transport=transport, base_url="http://test", **kw)


@pytest.fixture(autouse=True)
def no_echo_delay(monkeypatch):
    monkeypatch.setenv("DYN_TOKEN_ECHO_DELAY_MS", "0")


# -- API keys --------------------------------------------------------------------------------


def test_api_keys_compare_every_key():
    keys = ApiKeys(["alpha", "beta"])
    assert keys.accepts("alpha") and keys.accepts("beta")
    assert not keys.accepts("gamma") and not keys.accepts("") and not keys.accepts("alph")
    with pytest.raises(ValueError):
        ApiKeys([])


async def test_no_key_configured_means_open():
    async with client_for(HttpOptions()) as c:
        assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_key_required_on_every_route_but_probes_and_metrics():
    async with client_for(HttpOptions(api_keys=("k1", "k2"))) as c:
        r = await c.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and "API key" in err["message"]
        r = await c.get("/v1/models", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        r = await c.get("/v1/models", headers={"Authorization": "Basic k1"})
        assert r.status_code == 401
        # Routes that are not under /v1, and routes that do not exist, are closed too.
        assert (await c.get("/openapi.json")).status_code == 401
        assert (await c.get("/no/such/route")).status_code == 401
        for key in ("k1", "k2"):
            auth = {"Authorization": f"Bearer {key}"}
            r = await c.post("/v1/chat/completions", json=CHAT, headers=auth)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == "hi"
        for path in ("/health", "/live", "/metrics"):
            assert (await c.get(path)).status_code == 200, path


async def test_protect_metrics():
    async with client_for(HttpOptions(api_keys=("k",), protect_metrics=True)) as c:
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers={"Authorization": "Bearer k"})).status_code == 200
        assert (await c.get("/health")).status_code == 200


async def test_openai_sdk_with_and_without_key():
    transport = httpx.ASGITransport(app=app_with(HttpOptions(api_keys=("secret",))))

    def sdk(key: str) -> openai.AsyncOpenAI:
        http = httpx.AsyncClient(transport=transport, base_url="http://test")
        return openai.AsyncOpenAI(
            base_url="http://test/v1", api_key=key, http_client=http, max_retries=0
        )

    with pytest.raises(openai.AuthenticationError):
        await sdk("nope").models.list()
    models = await sdk("secret").models.list()
    assert [m.id for m in models.data] == ["echo"]


# -- CORS ------------------------------------------------------------------------------------


async def test_cors_off_by_default():
    async with client_for(HttpOptions()) as c:
        r = await c.get("/v1/models", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in r.headers


async def test_cors_allowed_origins_and_preflight_without_key():
    options = HttpOptions(api_keys=("k",), allowed_origins=("https://app.example",))
    async with client_for(options) as c:
        preflight = {
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        r = await c.options("/v1/chat/completions", headers=preflight)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        r = await c.options(
            "/v1/chat/completions", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert r.status_code == 400
        r = await c.get(
            "/v1/models", headers={"Origin": "https://app.example", "Authorization": "Bearer k"}
        )
        assert r.headers["access-control-allow-origin"] == "https://app.example"


# -- body limit ------------------------------------------------------------------------------


async def test_body_over_content_length_limit_is_413():
    async with client_for(HttpOptions(max_body_bytes=1024)) as c:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]}
        r = await c.post("/v1/chat/completions", json=big)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "request_too_large"
        ok = await c.post("/v1/chat/completions", json=CHAT)
        assert ok.status_code == 200


async def test_streamed_body_is_cut_off_at_the_limit():
    """A chunked body (no Content-Length) is refused as soon as it crosses the limit: the rest
    is never read."""
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"model": "echo", "messages": [{"role": "user", "content": "'
        for _ in range(10_000):
            sent += 1
            yield b"x" * 1024

    async with client_for(HttpOptions(max_body_bytes=16 * 1024)) as c:
        r = await c.post(
            "/v1/chat/completions", content=endless(), headers={"content-type": "application/json"}
        )
    assert r.status_code == 413
    assert json.loads(r.content)["error"]["code"] == "request_too_large"
    assert sent <= 17


async def test_streamed_body_under_the_limit_is_served():
    async def chunks() -> AsyncIterator[bytes]:
        body = json.dumps(CHAT).encode()
        for i in range(0, len(body), 7):
            yield body[i : i + 7]

    async with client_for(HttpOptions(max_body_bytes=1024)) as c:
        r = await c.post(
            "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
        )
    assert r.status_code == 200, r.text


async def test_key_checked_before_the_body_is_read():
    async with client_for(HttpOptions(api_keys=("k",), max_body_bytes=10)) as c:
        r = await c.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 401
