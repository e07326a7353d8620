"""A client that goes away must stop the engine, not just the HTTP response (in-process, real uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn

from dynamo.frontend.http.app import AppState, build_app
from dynamo.llm import Context, ModelType
from dynamo.llm.pipeline import OpenAIEngineModel


class RecordingEngine:
    """A chat engine that streams forever and records how its request ended."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.ended = asyncio.Event()
        self.saw_stop = False
        self.context: Context | None = None

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        self.context = context
        self.started.set()
        try:
            for _ in range(100_000):
                if context.is_stopped():
                    self.saw_stop = True
                    return
                await asyncio.sleep(0.01)
                yield {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}
        finally:
            self.saw_stop = self.saw_stop or context.is_stopped()
            self.ended.set()


@contextlib.asynccontextmanager
async def serve(engine: RecordingEngine, port: int):
    state = AppState()
    state.models.add(OpenAIEngineModel("m", None, engine, frozenset({ModelType.Chat})))
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(state), host="127.0.0.1", port=port, log_config=None, lifespan="off"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        server.should_exit = True
        await task


BODY = {"model": "m", "messages": [{"role": "user", "content": "go"}]}


async def test_stream_disconnect_stops_engine(free_port):
    engine = RecordingEngine()
    async with serve(engine, free_port()) as url, httpx.AsyncClient() as client:
        async with client.stream("POST", url, json={**BODY, "stream": True}) as r:
            async for _ in r.aiter_lines():
                break
        await asyncio.wait_for(engine.ended.wait(), 5)
    # The engine's generator was closed long before its 100k tokens, and its context is stopped
    # (engines that generate on a thread watch that flag).
    assert engine.context.is_stopped()


async def test_unary_disconnect_stops_engine(free_port):
    engine = RecordingEngine()
    async with serve(engine, free_port()) as url, httpx.AsyncClient() as client:
        request = asyncio.create_task(client.post(url, json=BODY, timeout=30))
        await asyncio.wait_for(engine.started.wait(), 5)
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        await asyncio.wait_for(engine.ended.wait(), 5)
    assert engine.context.is_stopped()
