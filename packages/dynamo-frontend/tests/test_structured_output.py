"""Structured output and log probabilities on a real engine: llama.cpp with SmolLM2, through the
frontend and the openai SDK, in process. The answers must parse, and validate against the schema
(`jsonschema`), streamed or not.

Each test runs once `out=llamacpp` declares the feature (`dynamo.llm.features`) and is skipped
until then; where the engine does not declare it, the frontend must refuse the request, which
`test_openai_conformance` checks on engines without it."""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

from dynamo.frontend.http.app import AppState, build_app
from dynamo.llm import EngineConfig
from dynamo.llm.features import Feature
from dynamo.llm.model_card import load_card
from dynamo.llm.pipeline import BackendModel

jsonschema = pytest.importorskip("jsonschema")
llamacpp = pytest.importorskip("dynamo.engines.llamacpp")

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Invent a person. Answer in JSON with a name and an age."}]


def needs(*features: Feature) -> pytest.MarkDecorator:
    missing = [f.value for f in features if f not in llamacpp.LlamaCppEngine.features]
    return pytest.mark.skipif(
        bool(missing), reason=f"out=llamacpp does not declare {', '.join(missing)} yet"
    )


@pytest.fixture
async def client(smollm2_gguf):
    card = load_card(str(smollm2_gguf), model_name="smol")
    config = EngineConfig(model_name="smol", card=card, model_path=str(smollm2_gguf))
    engine = await llamacpp.LlamaCppEngine.start(config)
    state = AppState()
    state.models.add(BackendModel("smol", card, engine, llamacpp.LlamaCppEngine.features))
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(state)), base_url="http://t"
    )
    yield openai.AsyncOpenAI(base_url="http://t/v1", api_key="x", http_client=http, max_retries=0)
    await http.aclose()
    await engine.close()


async def answer(client, stream: bool, **kw) -> str:
    # Sampled (the grammar must hold whatever is drawn) and seeded, so a run is repeatable.
    kw = {"model": "smol", "messages": ASK, "max_tokens": 96, "temperature": 0.7, "seed": 2, **kw}
    if not stream:
        resp = await client.chat.completions.create(**kw)
        assert resp.choices[0].finish_reason == "stop", resp
        return resp.choices[0].message.content
    chunks = [ch async for ch in await client.chat.completions.create(stream=True, **kw)]
    assert chunks[-1].choices[0].finish_reason == "stop"
    return "".join(ch.choices[0].delta.content or "" for ch in chunks)


@pytest.mark.slow
@needs(Feature.GUIDED_JSON)
@pytest.mark.parametrize("stream", [False, True])
async def test_json_schema_answer_validates(client, stream):
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True},
    }
    text = await answer(client, stream, response_format=fmt)
    jsonschema.validate(json.loads(text), PERSON)


@pytest.mark.slow
@needs(Feature.GUIDED_JSON)
@pytest.mark.parametrize("stream", [False, True])
async def test_json_object_answer_is_an_object(client, stream):
    # Greedy: with no schema to bound it, sampled SmolLM2 now and then nests or repeats keys
    # until max_tokens ("length"), an answer that is still JSON so far but cannot be parsed.
    text = await answer(client, stream, response_format={"type": "json_object"}, temperature=0)
    assert isinstance(json.loads(text), dict)


@pytest.mark.slow
@needs(Feature.GUIDED_CHOICE, Feature.GUIDED_REGEX)
async def test_guided_choice_and_regex(client):
    text = await answer(client, False, extra_body={"guided_choice": ["red", "green", "blue"]})
    assert text in {"red", "green", "blue"}
    text = await answer(client, False, extra_body={"nvext": {"guided_regex": "[0-9]{3}-[0-9]{4}"}})
    assert re.fullmatch("[0-9]{3}-[0-9]{4}", text)


@pytest.mark.slow
@needs(Feature.LOGPROBS)
async def test_logprobs_from_the_engine(client):
    resp = await client.chat.completions.create(
        model="smol", messages=ASK, max_tokens=8, logprobs=True, top_logprobs=3, temperature=0
    )
    entries = resp.choices[0].logprobs.content
    assert len(entries) == resp.usage.completion_tokens or resp.choices[0].finish_reason == "stop"
    for e in entries:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3
        # Greedy: the sampled token is the most likely one.
        assert e.logprob == pytest.approx(e.top_logprobs[0].logprob, abs=1e-4)
