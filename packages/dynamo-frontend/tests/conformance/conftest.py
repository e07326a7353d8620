"""OpenAI API conformance through the real `openai` SDK, in process (httpx.ASGITransport over
`build_app`), streaming and unary, on the mocker (made-up log probabilities) and echo_core (its
answer is the prompt, so with `nvext.use_raw_prompt` a test chooses exactly what the "model"
says: tool-call markup, think tags).

Each feature is checked where an engine honours it and refused (400 naming the field) where it
does not. The test modules of this folder are split by feature; they share the app of this
conftest (fixture `client`) and the helpers of `dynamo.testing.openai_api`."""

from __future__ import annotations

import httpx
import openai
import pytest

from dynamo.engines.echo import EchoCoreEngine, EchoFullEngine
from dynamo.engines.mocker import MockerEngine
from dynamo.frontend.http.app import AppState, build_app
from dynamo.llm import EngineConfig
from dynamo.llm.model_card import load_card
from dynamo.llm.model_type import ModelType
from dynamo.llm.pipeline import BackendModel, OpenAIEngineModel
from dynamo.llm.postprocess import OutputParsers

MOCKER = {"speedup_ratio": 0, "block_size": 4, "num_gpu_blocks": 4096, "seed": 1}


@pytest.fixture(scope="module")
def card(smollm2_gguf):
    return load_card(str(smollm2_gguf), model_name="smol")


@pytest.fixture
async def client(card, monkeypatch):
    """An openai client on an app serving `mock` (mocker), `echo` (echo_core), `echo-tools`
    (echo_core with the hermes and qwen3 parsers) and `echo-full` (a text-level engine)."""
    monkeypatch.setenv("DYN_TOKEN_ECHO_DELAY_MS", "0")
    from dynamo.engines.echo._engines import token_delay_seconds

    token_delay_seconds.cache_clear()
    mocker = await MockerEngine.start(EngineConfig(model_name="mock", extra_engine_args=MOCKER))
    echo = EchoCoreEngine()
    state = AppState()
    state.models.add(BackendModel("mock", card, mocker, MockerEngine.features))
    state.models.add(BackendModel("echo", card, echo, EchoCoreEngine.features, OutputParsers()))
    state.models.add(
        BackendModel(
            "echo-tools",
            card,
            echo,
            EchoCoreEngine.features,
            OutputParsers(tool_call_parser="hermes", reasoning_parser="qwen3"),
        )
    )
    text_engine = OpenAIEngineModel(
        "echo-full",
        None,
        OverTheWire(EchoFullEngine()),
        frozenset({ModelType.Chat, ModelType.Completion}),
        EchoFullEngine.features,
    )
    state.models.add(text_engine)
    app = build_app(state)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    yield openai.AsyncOpenAI(base_url="http://t/v1", api_key="x", http_client=http, max_retries=0)
    await http.aclose()
    await mocker.close()
    token_delay_seconds.cache_clear()


class OverTheWire:
    """An engine behind the request plane's codec, as a remote worker sees its requests."""

    def __init__(self, engine):
        self.engine = engine

    def generate(self, request, context):
        from dynamo.runtime.codec import decode_request, encode_request

        _, body = decode_request(encode_request(context.id(), request))
        return self.engine.generate(body, context)
