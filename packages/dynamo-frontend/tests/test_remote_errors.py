"""A worker's request error reaches the HTTP client as the worker raised it: through real NATS,
the frontend's `RouterEngine` and the one exception mapper, the status, type, code and param stay
what they were (a worker-side `context_length_exceeded` is a 400 `context_length_exceeded`)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from dynamo.frontend.http.app import AppState, build_app
from dynamo.frontend.model_manager import ModelManager
from dynamo.llm.errors import ContextLengthExceededError, InvalidRequestError
from dynamo.llm.model_type import ModelType
from dynamo.llm.pipeline import OpenAIEngineModel
from dynamo.llm.router_engine import RouterEngine
from dynamo.runtime import DistributedRuntime

pytestmark = pytest.mark.integration

CHAT = {"model": "remote", "messages": [{"role": "user", "content": "hi"}]}


async def handler(request):
    """A Chat worker that refuses every request the way an engine's own checks would."""
    if request.get("max_tokens") == 7:
        raise InvalidRequestError("max_tokens 7 is unlucky", param="max_tokens", code="unlucky")
    raise ContextLengthExceededError("the prompt has 9000 tokens; the model takes 2048")
    yield  # an async generator, as handlers are


@pytest.fixture
async def frontend(runtime_env):
    runtime = DistributedRuntime()
    await runtime.ensure_connected()
    endpoint = runtime.namespace("remote_errors").component("backend").endpoint("generate")
    serving = asyncio.create_task(endpoint.serve_endpoint(handler))
    client = await endpoint.client()
    deadline = time.monotonic() + 15
    while not client.instance_ids():
        assert time.monotonic() < deadline, "the worker never registered"
        await asyncio.sleep(0.05)
    models = ModelManager()
    models.add(OpenAIEngineModel("remote", None, RouterEngine(client), frozenset({ModelType.Chat})))
    transport = httpx.ASGITransport(app=build_app(AppState(models=models)))
    async with httpx.AsyncClient(transport=transport, base_url="http://frontend") as http:
        yield http
    runtime.shutdown()
    await serving
    await runtime.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_context_length_exceeded_on_the_worker_is_that_on_the_client(frontend, stream):
    response = await frontend.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "the prompt has 9000 tokens; the model takes 2048",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


async def test_a_workers_own_code_and_param_pass_through(frontend):
    response = await frontend.post("/v1/chat/completions", json={**CHAT, "max_tokens": 7})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "max_tokens 7 is unlucky",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "unlucky",
    }
