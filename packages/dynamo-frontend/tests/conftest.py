"""Fixtures of the frontend tests.

`translated`: an in-process app (the real `build_app`) with chat engines that report what they were asked,
for the Responses and Anthropic tests; clients of the real SDKs over `httpx.ASGITransport`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from dynamo.engines.echo import EchoFullEngine
from dynamo.frontend.http.app import AppState, build_app
from dynamo.llm import ModelType
from dynamo.llm.errors import EngineFailedError
from dynamo.llm.features import Feature
from dynamo.llm.pipeline import OpenAIEngineModel
from dynamo.llm.postprocess import OutputParsers
from dynamo.runtime.context import Context

CHAT_MODELS = frozenset({ModelType.Chat, ModelType.Completion})


def _chunk(content: str, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": content} if content else {}
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class ReportingEngine:
    """A chat engine that answers with the JSON of the request it got (messages, options), so a
    test sees exactly what the translation handed the chat pipeline."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        self.requests.append(request)
        yield _chunk(orjson.dumps(request["messages"]).decode())
        yield _chunk("", "stop")


class ScriptedEngine:
    """A chat engine that answers every request with the same text, a few characters a chunk
    (for tool-call and reasoning markup that the model's parsers must find)."""

    def __init__(self, text: str):
        self.text = text

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        for i in range(0, len(self.text), 7):
            yield _chunk(self.text[i : i + 7])
        yield _chunk("", "stop")


class FailingEngine:
    """A chat engine that fails after its first piece of text."""

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        yield _chunk("partial ")
        await asyncio.sleep(0)
        raise EngineFailedError("the engine broke down")


def app_state(**kw: Any) -> tuple[AppState, ReportingEngine]:
    state = AppState(**kw)
    reporter = ReportingEngine()
    state.models.add(OpenAIEngineModel("echo", None, EchoFullEngine(), CHAT_MODELS))
    # It "honours" every option: it only reports them.
    state.models.add(OpenAIEngineModel("report", None, reporter, CHAT_MODELS, frozenset(Feature)))
    state.models.add(OpenAIEngineModel("failing", None, FailingEngine(), CHAT_MODELS))
    # A "model" that thinks, then calls a tool, in Qwen3's markup (hermes tool calls).
    tooled = ScriptedEngine(
        "<think>The user wants weather.</think>Let me check."
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    )
    parsers = OutputParsers(tool_call_parser="hermes", reasoning_parser="qwen3")
    everything = frozenset(Feature)
    state.models.add(OpenAIEngineModel("tooled", None, tooled, CHAT_MODELS, everything, parsers))
    return state, reporter


def http_client(state: AppState, httpx_module: Any = httpx) -> httpx.AsyncClient:
    """An async client on the app; `httpx_module` for SDKs built on another httpx (the
    anthropic SDK ships its own, `httpx2`)."""
    transport = httpx_module.ASGITransport(app=build_app(state))
    return httpx_module.AsyncClient(transport=transport, base_url="http://test")


class Translated:
    """What the `translated` fixture hands a test: `app_state(**AppState fields)` and
    `http_client(state)`."""

    app_state = staticmethod(app_state)
    http_client = staticmethod(http_client)


@pytest.fixture
def translated(monkeypatch) -> Translated:
    monkeypatch.setenv("DYN_TOKEN_ECHO_DELAY_MS", "0")
    return Translated()
