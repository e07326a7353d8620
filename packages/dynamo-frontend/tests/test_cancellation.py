"""A client that goes away must stop the engine, not just the HTTP response: for chat, Responses
and Anthropic requests, streamed or not (in process, real uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from dynamo.frontend.http.app import AppState, build_app
from dynamo.llm import Context, ModelType
from dynamo.llm.pipeline import OpenAIEngineModel
from dynamo.testing import serve_asgi


class EndlessEngine:
    """A chat engine that streams until stopped, and records that it was."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.ended = asyncio.Event()
        self.context: Context | None = None

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        self.context = context
        self.started.set()
        try:
            while not context.is_stopped():
                await asyncio.sleep(0.01)
                yield {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}
        finally:
            self.ended.set()


def app_for(engine: EndlessEngine) -> Any:
    """The frontend's app serving `engine` as model `m`, Anthropic's API on too."""
    state = AppState(anthropic_api=True)
    state.models.add(OpenAIEngineModel("m", None, engine, frozenset({ModelType.Chat})))
    return build_app(state)


GO = [{"role": "user", "content": "go"}]
ROUTES = {
    "/v1/chat/completions": {"model": "m", "messages": GO},
    "/v1/responses": {"model": "m", "input": "go"},
    "/v1/messages": {"model": "m", "max_tokens": 100000, "messages": GO},
}


@pytest.mark.parametrize("path", list(ROUTES))
async def test_stream_disconnect_stops_engine(path):
    engine = EndlessEngine()
    async with serve_asgi(app_for(engine)) as url, httpx.AsyncClient() as client:
        async with client.stream("POST", url + path, json={**ROUTES[path], "stream": True}) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if "delta" in line:
                    break
        await asyncio.wait_for(engine.ended.wait(), 5)
    # The engine's generator was closed long before the stream would end, and its context is
    # stopped (engines that generate on a thread watch that flag).
    assert engine.context.is_stopped()


@pytest.mark.parametrize("path", list(ROUTES))
async def test_unary_disconnect_stops_engine(path):
    engine = EndlessEngine()
    async with serve_asgi(app_for(engine)) as url, httpx.AsyncClient() as client:
        request = asyncio.create_task(client.post(url + path, json=ROUTES[path], timeout=30))
        await asyncio.wait_for(engine.started.wait(), 5)
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        await asyncio.wait_for(engine.ended.wait(), 5)
    assert engine.context.is_stopped()
