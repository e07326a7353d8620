"""`OpenAIServing` in process: request parsing and the metrics of unary answers."""

from __future__ import annotations

import threading

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
    import orjson
    from starlette.requests import Request

    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * size}]})
    request = Request({"type": "http", "method": "POST", "headers": []}, _Receive(body))
    _THREADS.clear()
    parsed = await parse_body(request, _Recording)
    assert parsed.messages[0].content == "x" * size
    on_loop = [threading.main_thread()] == _THREADS
    assert on_loop == (len(body) < serving.OFFLOAD_BODY_BYTES)
