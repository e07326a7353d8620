"""`OpenAIServing` in process: request parsing (off the loop for big bodies; a 400 for a body
that is not a JSON object), the metrics of unary answers and of failed streams, the error event
of a stream that fails midway, the usage chunk, and the system fingerprint."""

from __future__ import annotations

import threading

import orjson
import pytest
from prometheus_client import CollectorRegistry

from dynamo.frontend.http import serving
from dynamo.frontend.http.serving import parse_body
from dynamo.llm.protocols.openai import ChatCompletionRequest


def _sample(registry: CollectorRegistry, name: str, model: str) -> float:
    value = registry.get_sample_value(name, {"model": model})
    return 0.0 if value is None else value


async def test_a_unary_answer_records_first_token_time_and_gaps(translated, monkeypatch):
    """Issue 18 item 11: a non-streaming request recorded its whole duration as time to first
    token, and no inter-token latencies."""
    monkeypatch.setattr("dynamo.engines.echo._engines.token_delay_seconds", lambda: 0.02)
    state, _ = translated.app_state()
    registry = state.metrics.registry
    async with translated.http_client(state) as http:
        r = await http.post(
            "/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "abcdefghij"}]},
        )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "abcdefghij"
    prefix = state.metrics.prefix
    ttft = _sample(registry, f"{prefix}_time_to_first_token_seconds_sum", "echo")
    duration = _sample(registry, f"{prefix}_request_duration_seconds_sum", "echo")
    gaps = _sample(registry, f"{prefix}_inter_token_latency_seconds_count", "echo")
    assert gaps == 9  # ten tokens, nine gaps between them
    assert 0 < ttft < duration / 3  # one token's delay, not the whole answer's ten


class _Receive:
    """An ASGI `receive` handing over one body."""

    def __init__(self, body: bytes):
        self.body = body

    async def __call__(self) -> dict:
        return {"type": "http.request", "body": self.body, "more_body": False}


_THREADS: list[threading.Thread] = []


class _Recording(ChatCompletionRequest):
    """The request model, noting which thread validated it."""

    @classmethod
    def model_validate(cls, data, **kw):  # type: ignore[override]
        _THREADS.append(threading.current_thread())
        return super().model_validate(data, **kw)


@pytest.mark.parametrize("size", [10, serving.OFFLOAD_BODY_BYTES])
async def test_big_bodies_are_parsed_off_the_event_loop(size):
    """Issue 18 item 2: request validation of big bodies must not block the event loop."""
    from starlette.requests import Request

    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * size}]})
    request = Request({"type": "http", "method": "POST", "headers": []}, _Receive(body))
    _THREADS.clear()
    parsed = await parse_body(request, _Recording)
    assert parsed.messages[0].content == "x" * size
    on_loop = [threading.main_thread()] == _THREADS
    assert on_loop == (len(body) < serving.OFFLOAD_BODY_BYTES)


def _requests(registry: CollectorRegistry, model: str, request_type: str, status: str) -> float:
    labels = {
        "model": model,
        "endpoint": "chat_completions",
        "request_type": request_type,
        "status": status,
    }
    return registry.get_sample_value("dynamo_frontend_requests_total", labels) or 0.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the request body is not valid JSON"),
        (b'["a", "list"]', "the request body must be a JSON object"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_an_openai_400(translated, body, message):
    state, _ = translated.app_state()
    async with translated.http_client(state) as http:
        r = await http.post("/v1/chat/completions", content=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"


async def test_a_stream_that_fails_midway_ends_with_an_error_event_then_done(translated):
    state, _ = translated.app_state()
    ask = {"model": "failing", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with translated.http_client(state) as http:
        r = await http.post("/v1/chat/completions", json=ask)
    # The first piece came before the failure: the answer had already started as a 200 stream.
    assert r.status_code == 200
    events = r.text.strip().split("\n\n")
    assert '"partial "' in events[0]
    assert events[-2].startswith("event: error\ndata: ")
    assert "the engine broke down" in events[-2]
    assert events[-1] == "data: [DONE]"
    registry = state.metrics.registry
    assert _requests(registry, "failing", "stream", "error") == 1
    assert _requests(registry, "failing", "stream", "success") == 0


async def test_include_usage_adds_a_last_usage_chunk(translated):
    state, _ = translated.app_state()
    ask = {
        "model": "echo",
        "messages": [{"role": "user", "content": "abc"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with translated.http_client(state) as http:
        r = await http.post("/v1/chat/completions", json=ask, headers={"x-request-id": "r-1"})
    assert r.headers["x-request-id"] == "r-1"
    events = r.text.strip().split("\n\n")
    assert events[-1] == "data: [DONE]"
    usage_chunk = orjson.loads(events[-2].removeprefix("data: "))
    assert usage_chunk["choices"] == [] and usage_chunk["id"] == "chatcmpl-r-1"
    assert usage_chunk["usage"]["completion_tokens"] == 3
    assert _requests(state.metrics.registry, "echo", "stream", "success") == 1


def test_the_fingerprint_names_the_card_and_the_features(smollm2_gguf):
    from dynamo.llm.features import Feature
    from dynamo.llm.model_card import ModelDeploymentCard, load_card
    from dynamo.llm.model_type import ModelType
    from dynamo.llm.pipeline import ServedModel

    def model(card, features) -> ServedModel:
        return ServedModel("m", card, ModelType.Chat, frozenset(features))

    card = load_card(str(smollm2_gguf))
    plain = serving.fingerprint(model(card, []))
    assert plain == serving.fingerprint(model(card, []))
    assert plain.startswith("fp_") and len(plain) == 15
    assert serving.fingerprint(model(card, [Feature.SEED])) != plain
    other = ModelDeploymentCard.for_name_only("m")
    assert serving.fingerprint(model(other, [])) != plain
