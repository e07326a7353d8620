"""The HTTP app in process (`httpx.ASGITransport` over `build_app`) with the echo_full engine:
serving, chunks and errors without a server process. Subprocess tests keep signals and real
engines."""

from __future__ import annotations

import json

import httpx
import pytest

from dynamo.engines.echo import EchoFullEngine
from dynamo.frontend.http.app import AppState, build_app
from dynamo.frontend.local_model import StartedEngine, served_model
from dynamo.frontend.run_config import RunConfig
from dynamo.llm.engine import EngineConfig


@pytest.fixture
async def client(monkeypatch):
    monkeypatch.setenv("DYN_TOKEN_ECHO_DELAY_MS", "0")
    engine = await EchoFullEngine.start(EngineConfig(model_name="echo"))
    state = AppState()
    started = StartedEngine(EchoFullEngine, engine, None, "echo", None)
    state.models.add(served_model(started, RunConfig(input="http")))
    transport = httpx.ASGITransport(app=build_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        yield http
    await engine.close()


def chat(content: str, **extra) -> dict:
    return {"model": "echo", "messages": [{"role": "user", "content": content}], **extra}


async def test_a_chat_answer_echoes_the_message(client):
    response = await client.post("/v1/chat/completions", json=chat("hello"))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_a_streamed_answer_is_chunks_then_done(client):
    response = await client.post("/v1/chat/completions", json=chat("hey", stream=True))
    assert response.status_code == 200
    events = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "hey"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_echo_full_serves_completions_too(client):
    response = await client.post("/v1/completions", json={"model": "echo", "prompt": "abc"})
    assert response.status_code == 200
    assert response.json()["choices"][0]["text"] == "abc"


async def test_errors_are_openai_shaped(client):
    unknown = await client.post("/v1/chat/completions", json={**chat("x"), "model": "nope"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    route = await client.get("/v1/nothing-here")
    assert route.status_code == 404
    assert route.json()["error"]["type"] == "not_found_error"
    bad = await client.post("/v1/chat/completions", json={"model": "echo"})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
